"""How a design's states and actions read in traces and reports: the attributes of trace
nodes and edges, the damage an action did, the review report's structured state, and the
stable names of actions that replay finds them by."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checker.symbolic import Term
from model.lang import isa
from model.system.interp import Interpreter, SysState
from model.system.layout import Layout
from model.system.relation import Action
from model.system.vocabulary import CR4_FIELDS, var_values
from model.x86 import segments
from model.x86.arch import DB, FLAG_NAMES, vector_name
from model.x86.memory import region_name
from model.x86.msr import CR3
from model.x86.state import REGISTERS, CodeAddr, Cpu, Frame, Idt, Platform, Run, Tss, Value


class TraceDescription:
    """Descriptions of one laid-out design's states and actions."""

    def __init__(
        self, layout: Layout, platform: Platform, interp: Interpreter,
        next_state: Callable[[SysState, Action], SysState],
    ):
        self.layout = layout
        self.platform = platform
        self.interp = interp
        self.next_state = next_state
        self.var_names = [v.name for v in layout.design.variables]

    def describe_state(self, s: SysState) -> Mapping[str, str | int | bool]:
        m = s.machine
        out: dict[str, str | int | bool] = {}
        for i, c in enumerate(m.cpus):
            out[f"cpu{i}.pc"] = self._where(c.pc)
            out[f"cpu{i}.cpl"] = c.cpl
            out[f"cpu{i}.rsp"] = self._addr(c.rsp)
            out[f"cpu{i}.flags"] = (
                " ".join(n for n, bit in FLAG_NAMES if c.rflags & bit) or "-"
                if isinstance(c.rflags, int) else f"symbolic {c.rflags!r}"
            )
            out[f"cpu{i}.iopl"] = str(self._iopl(c.rflags))  # one GraphML type either way
            out[f"cpu{i}.cs"] = f"{segments.cs_of(self.platform, c):#x}"
            out[f"cpu{i}.ss"] = f"{segments.ss_of(self.platform, c):#x}"
            out[f"cpu{i}.gs"] = "kernel" if c.gs_base is None else "user"
            out[f"cpu{i}.shadow"] = c.shadow.name.lower()
            out[f"cpu{i}.held_db"] = c.held_db
            out[f"cpu{i}.db_unsure"] = c.db_unsure
            out[f"cpu{i}.cr4"] = self._cr4(c)
            out[f"cpu{i}.cr3"] = self._cr3(c)
            out[f"cpu{i}.run"] = c.run.name.lower()
            out[f"cpu{i}.nmi"] = (
                ("blocked" if c.nmi_blocked else "open") + (" +latched" if c.nmi_pending else "")
            )
            out[f"cpu{i}.mcip"] = c.mcip
            out[f"cpu{i}.idtr"] = c.idtr or "empty"
            out[f"cpu{i}.tr"] = c.tr or "none"
            regs = {n: c.reg(n) for n in ("rax", "rcx", "rdi", "r11") if c.reg(n) != 0}
            if regs:
                out[f"cpu{i}.regs"] = " ".join(f"{k}={self._value(v)}" for k, v in regs.items())
        out["frames"] = "; ".join(self._frame(f) for f in m.frames) or "none"
        for idt in m.idts:
            out[f"idt.{idt.name}"] = self._idt(idt)
        for tss in m.tsss:
            out[f"tss.{tss.name}"] = self._tss(tss)
        for name in self.var_names:
            out[f"var.{name}"] = self._var_text(s, name)
        out["incidents"] = ", ".join(m.incidents) or "none"
        return out

    def describe_action(self, s: SysState, a: Action) -> Mapping[str, str | int | bool]:
        m = s.machine
        cpu = m.cpus[a.cpu]
        out: dict[str, str | int | bool] = {"cpu": a.cpu, "kind": str(a.kind)}
        if a.kind in ("step", "fault"):
            ins = self.interp.instr_at(cpu.pc)
            text = ins.text if ins is not None else (
                f"jumps to {cpu.pc}, where the design has no code: it is lost"
            )
            if a.kind == "fault" and ins is not None and ins.fault is not None:
                if ins.fault == DB:  # `@fault(#DB)` is a trap: the step completes first
                    text = f"{text}  -> completes, then #DB (trap)"
                else:
                    text = f"{text}  -> raises {vector_name(ins.fault)}"
            elif ins is not None and ins.op in isa.CHOICE_LABELS:
                # the environment's pick, as the instruction table names it
                label = isa.CHOICE_LABELS[ins.op].format(index=a.arg, ordinal=a.arg + 1)
                text = f"{text}  [{label}]"
            out["label"] = f"cpu{a.cpu}: {text}"
            if ins is not None:
                # a macro's line: the invocation, with the macro's own line(s) beside it
                out["file"] = ins.loc.site.file
                out["line"] = ins.loc.site.line
                if ins.loc.via is not None:
                    out["macro"] = ins.loc.macro_lines()
            out["routine"] = cpu.pc.routine
        elif a.kind == "ext":
            note = {2: " (a fake NMI)", 18: " (a fake #MC)"}.get(a.arg, "")
            out["label"] = f"cpu{a.cpu}: external interrupt, vector {a.arg:#x}{note}"
        else:
            out["label"] = f"cpu{a.cpu}: " + {
                "nmi": "NMI arrives",
                "df": "a double fault is raised",
                "mce": "#MC arrives",
                "ipi": "NMI IPI arrives",
                "pending-nmi": "latched NMI is taken",
                "held-db": "held-back #DB is taken",
                "db-dropped": "the delivery's pushes raise no #DB after all",
                "timeout": "the wait times out",
            }[a.kind]
        damage = self.damage(s, self.next_state(s, a))
        if damage:
            out["damage"] = damage
        return out

    def damage(self, before: SysState, after: SysState) -> str:
        """What an action broke: frames it clobbered, frames it put on guest memory, a
        triple fault, a new incident."""
        notes: list[str] = []
        def plain(f: Frame) -> Frame:  # the frame, whatever has written over it
            return f._replace(clobbered=False, modified=False)

        old = set(before.machine.frames)
        existed = {plain(f) for f in old}
        for f in after.machine.frames:
            if f.clobbered and f not in old and plain(f) in existed:
                notes.append(f"clobbers {self._frame(f)}")
            if f.on_guest_stack and plain(f) not in existed:
                notes.append(f"pushes {self._frame(f)} onto guest-controlled memory")
        for i, (c0, c1) in enumerate(zip(before.machine.cpus, after.machine.cpus, strict=True)):
            if c1.run is Run.SHUTDOWN and c0.run is not Run.SHUTDOWN:
                notes.append(f"cpu{i} shuts down (triple fault)")
        for inc in after.machine.incidents:
            if inc not in before.machine.incidents:
                notes.append(inc)
        return "; ".join(notes)

    def action_key(self, s: SysState, a: Action) -> str:
        """A stable name for an action that survives edits to the design (for replay)."""
        key = f"{a.kind}:{a.cpu}:{a.arg}"
        if a.decisions:
            key += ":" + "".join("T" if d else "F" for d in a.decisions)
        if a.oracles:
            key += "/" + "".join("T" if d else "F" for d in a.oracles)
        return key

    def inspect_state(self, s: SysState) -> dict[str, Any]:
        """A structured, JSON-able view of a state for the review report: CPUs with their
        registers and design line, stacks with their written words and live frames."""
        m = s.machine
        cpus = []
        for i, c in enumerate(m.cpus):
            ins = self.interp.instr_at(c.pc)
            cpus.append({
                "id": i,
                "pc": str(c.pc),
                "routine": c.pc.routine,
                "instruction": ins.text if ins else None,
                "file": ins.loc.site.file if ins else None,
                "line": ins.loc.site.line if ins else None,
                "macro": (ins.loc.macro_lines() or None) if ins else None,
                "cpl": c.cpl,
                "rsp": self._addr(c.rsp),
                "rflags": self._value(c.rflags),
                "flags": [n for n, bit in FLAG_NAMES if c.rflags & bit]
                if isinstance(c.rflags, int) else [repr(c.rflags)],
                "iopl": self._iopl(c.rflags),
                "cs": f"{segments.cs_of(self.platform, c):#x}",
                "ss": f"{segments.ss_of(self.platform, c):#x}",
                "gs": "kernel" if c.gs_base is None else "user",
                "run": c.run.name.lower(),
                "nmi_blocked": c.nmi_blocked,
                "nmi_pending": c.nmi_pending,
                "mcip": c.mcip,
                "shadow": c.shadow.name.lower(),
                "held_db": c.held_db,
                "db_unsure": c.db_unsure,
                "cr4": self._cr4(c),
                "cr3": self._cr3(c),
                "idtr": c.idtr,
                "tr": c.tr,
                "gs_swapped": c.gs_swapped,
                "ipi_pending": c.ipi_nmi,
                "registers": {n: self._value(c.reg(n)) for n in REGISTERS},
            })
        stacks = []
        for r in self.platform.regions:
            words = [
                {"address": f"{a:#x}", "offset": a - r.lo, "value": self._value(v)}
                for a, v in m.memory if r.lo <= a < r.hi
            ]
            frames = [
                self._frame_record(f) for f in m.frames
                if isinstance(f.lo, int) and r.lo <= f.lo < r.hi
            ]
            rsps = [
                i for i, c in enumerate(m.cpus) if isinstance(c.rsp, int) and r.lo <= c.rsp <= r.hi
            ]
            if words or frames or rsps:
                stacks.append({
                    "name": r.name, "owner": r.owner, "lo": f"{r.lo:#x}", "size": r.size,
                    "words": words, "frames": frames, "rsp_of": rsps,
                })
        elsewhere = [
            self._frame_record(f) for f in m.frames
            if not isinstance(f.lo, int) or self.platform.region_at(f.lo) is None
        ]
        if elsewhere:
            stacks.append({"name": "guest memory", "owner": "guest", "lo": None, "size": None,
                           "words": [], "frames": elsewhere, "rsp_of": []})
        return {
            "cpus": cpus,
            "stacks": stacks,
            "idts": {t.name: self._idt(t) for t in m.idts},
            "tsss": {t.name: self._tss(t) for t in m.tsss},
            "variables": {n: self._var_text(s, n) for n in self.var_names},
            "incidents": list(m.incidents),
            "budgets": list(s.budgets),
        }

    def _frame_record(self, f: Frame) -> dict[str, Any]:
        return {
            "cpu": f.cpu, "vector": f.vector, "name": vector_name(f.vector), "source": f.source,
            "lo": self._value(f.lo), "hi": self._value(f.hi), "stack": f.stack,
            "from_cpl": f.from_cpl,
            "clobbered": f.clobbered, "modified_by_handler": f.modified,
            "on_guest_stack": f.on_guest_stack,
        }

    def _var_text(self, s: SysState, name: str) -> str:
        values = var_values(self.layout, s, name)
        if isinstance(values, int | CodeAddr | Term):  # one slot (a CodeAddr is a tuple too)
            return self._value(values)
        return "[" + ", ".join(self._value(v) for v in values) + "]"

    # -- helpers ---------------------------------------------------------------------------------
    def _where(self, pc: CodeAddr) -> str:
        ins = self.interp.instr_at(pc)
        if ins is None:
            return str(pc)
        macro = f", macro {ins.loc.macro_lines()}" if ins.loc.via is not None else ""
        return f"{pc} ({ins.text} @ line {ins.loc.site.line}{macro})"

    def _addr(self, v: Value) -> str:
        if isinstance(v, CodeAddr | Term):
            return repr(v) if isinstance(v, Term) else str(v)
        name = region_name(self.platform, v)
        top = next((r for r in self.platform.regions if r.hi == v), None)
        if name == "unmapped" and top is not None:
            return f"{top.name}+{v - top.lo:#x} (top)"
        if name in ("guest memory", "unmapped"):
            return f"{v:#x} ({name})"
        r = self.platform.region(name)
        return f"{name}+{v - r.lo:#x}"

    def _value(self, v: Value) -> str:
        if isinstance(v, Term):
            return repr(v)
        return str(v) if isinstance(v, CodeAddr) else f"{v:#x}"

    @staticmethod
    def _iopl(flags: int | Term) -> int | str:
        return (flags >> 12) & 3 if isinstance(flags, int) else f"symbolic {flags!r}"

    @staticmethod
    def _cr3(c: Cpu) -> str:
        """The value the last MOV to CR3 wrote, or `none`."""
        value = dict(c.msrs).get(CR3)
        if value is None:
            return "none"
        return f"{value:#x}" if isinstance(value, int) else str(value)

    @staticmethod
    def _cr4(c: Cpu) -> str:
        # the bits the vocabulary's CR4 record has (one table for properties and traces)
        return " ".join(f.name for f in CR4_FIELDS if f.get(c) is True) or "-"

    @staticmethod
    def _idt(t: Idt) -> str:
        """`limit N: NMI->nmi interrupt dpl0 ist2; ...` (the gates, by vector)."""
        gates = "; ".join(
            f"{vector_name(v)}->{g.routine} {g.kind} dpl{g.dpl}"
            + (f" ist{g.ist}" if g.ist else "") + ("" if g.present else " not-present")
            + ("" if v < t.limit else " beyond-limit")
            for v, g in t.gates
        )
        return f"limit {t.limit}: {gates or 'no gates'}"

    @staticmethod
    def _tss(t: Tss) -> str:
        ist = " ".join(f"ist{k}={name}" for k, name in enumerate(t.ist, 1) if name is not None)
        return f"rsp0={t.rsp0 or 'none'}" + (f" {ist}" if ist else "")

    def _frame(self, f: Frame) -> str:
        from_ = "guest" if f.from_cpl == 3 else f"CPL{f.from_cpl}"
        flags = (
            (" CLOBBERED" if f.clobbered else "")
            + (" MODIFIED-BY-HANDLER" if f.modified else "")
            + (" ON-GUEST-STACK" if f.on_guest_stack else "")
        )
        return (
            f"{vector_name(f.vector)} frame ({f.source}) of cpu{f.cpu} at {self._addr(f.lo)} "
            f"from {from_}{flags}"
        )

