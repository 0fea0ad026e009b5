"""Which delivery an event takes: FRED when the CPU has CR4.FRED set (model.x86.fred,
FRED spec §5), the IDT otherwise (model.x86.delivery, SDM Vol. 3A §6.12-6.15)."""

from __future__ import annotations

from model.x86 import delivery, fred
from model.x86.delivery import Event
from model.x86.state import CodeAddr, Machine, Platform, Value


def deliver(
    platform: Platform,
    m: Machine,
    cpu_i: int,
    event: Event,
    return_pc: Value,
    instruction_pc: CodeAddr | None = None,
    instruction_length: int = 0,
    *,
    cr2: Value = 0,
    debug: Value = 0,
) -> Machine:
    """Deliver `event` on CPU `cpu_i` the way its CR4.FRED says. `instruction_length` is
    the length FRED records for a software event; `cr2` (a #PF's linear address) and
    `debug` (a #DB's cause bits) are FRED's event data (FRED spec §5.2). The IDT model
    has no use for any of the three: it keeps no CR2 or DR6 register."""
    if m.cpus[cpu_i].fred:
        return fred.deliver_event(
            platform, m, cpu_i, event, return_pc, instruction_pc, instruction_length,
            cr2=cr2, debug=debug,
        )
    return delivery.deliver(platform, m, cpu_i, event, return_pc, instruction_pc)
