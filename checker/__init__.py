"""The generic model checker: breadth-first exploration of any transition system.

It never imports model/ beyond `checker.cli.main` asking `model.provider()` for a
`ModelProvider` (see checker.interface).
"""
