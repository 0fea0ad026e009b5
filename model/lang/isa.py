"""The instruction table: every instruction and pseudo-C built-in of the design language,
one entry each.

An entry says how the instruction is spelt (mnemonics and size suffixes), which operand
forms it takes, which status flags it reads and writes, what state it reads and writes
(the effects partial-order reduction needs), its one-line doc and the name of its
semantics. From the table are derived: the parser's mnemonic recognition and operand-form
checks (model/lang/parser.py), the interpreter's dispatch (model/system/interp.py binds
each entry's `semantics` to its handler `_i_<semantics>` and refuses to start when one is
missing), POR's per-instruction locality (model/system/por.py, from `effects`) and the
instruction reference in docs/design-language.md (`reference_markdown`, checked by
tests/test_isa_table.py).

Why the table lives here: the parser (model/lang) and the interpreter and POR
(model/system) all read it, and model/system imports model/lang, never the reverse; so
the lowest layer that knows the design language holds it. It names semantics rather than
holding functions because the semantics need the interpreter's operand access (the
design's variables, the layout); every architectural rule those handlers apply is a pure
function in model/x86 (alu.py, msr.py, instructions.py, memory.py), which imports
neither model/lang nor model/system.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.lang.ir import Abs, Call, Index, Indirect, Instr, Mem, StackTop, Var, walk
from model.x86.alu import CONDITION_ALIASES, CONDITION_FLAGS, SF, STATUS, ZF
from model.x86.arch import AC_FLAG, CF, DF_FLAG, IF, OF_FLAG

# -- effects: what an instruction reads or writes, for partial-order reduction ---------------
CPU = "cpu"  # this CPU's registers, flags, pc, latches and MSRs
STACK = "stack"  # memory at %rsp (push, pop, disp(%rsp)); changes_only() judges the writes
MEMORY = "memory"  # memory through another base or an absolute address: maybe shared
VARS = "vars"  # design variables the instruction names (judged by name: shared or own)
PERCPU = "percpu"  # %gs-relative data: whichever CPU's area the GS base points at
TABLES = "tables"  # IDT or TSS contents (judged by name: a per-CPU instance or shared)
GLOBAL = "global"  # state all CPUs share or wait on: wait conditions, incidents, the mode
OTHER_CPU = "other-cpu"  # another CPU's state: an IPI
CODE = "code"  # the code itself (freeing .init sections)
ENV = "env"  # the environment picks a value (one transition per choice)
EFFECTS = frozenset({CPU, STACK, MEMORY, VARS, PERCPU, TABLES, GLOBAL, OTHER_CPU, CODE, ENV})
# Effects that alone keep a step local to its CPU (names are then checked one by one).
LOCAL_EFFECTS = frozenset({CPU, STACK, VARS, ENV, TABLES})

# -- operand kinds ---------------------------------------------------------------------------
# i immediate, r register, m memory (disp(%reg), (base,index,scale), %gs:, an absolute
# address, a variable), l label or routine, * indirect target (*%reg, *mem), p label(%rip),
# n a table / TSS / input name.
KINDS = "irml*pn"


@dataclass(frozen=True)
class Insn:
    """One instruction of the design language (an assembler mnemonic or a built-in)."""

    op: str  # the operation the parser emits and the interpreter dispatches on
    mnemonics: tuple[str, ...]  # spellings without a size suffix
    sizes: str  # size suffixes the mnemonics take: subset of "bwlq" ("" none)
    forms: tuple[str, ...]  # accepted operand kinds, one string per form ("ir": imm, reg)
    flags_read: int
    flags_written: int
    reads: frozenset[str]
    writes: frozenset[str]
    doc: str
    semantics: str  # the interpreter's handler `_i_<semantics>`
    width: int = 64  # the operand width without a suffix or a register to say
    ends_flow: bool = False  # control never falls through (jmp, ret, iret, sysret, ud2)
    imm_bits: int = 32  # the widest immediate a 64-bit form encodes (sign-extended)
    variadic: bool = False  # `choose DST, SRC...`: forms give the first two kinds
    # explicit spellings: mnemonic -> (destination width, source width), for MOVZX/MOVSX
    spellings: dict[str, tuple[int, int]] = field(default_factory=dict)
    # an ENV step: how a trace names the environment's pick, `{index}` from 0, `{ordinal}`
    # from 1 ("" to show none: an input shows as the variable it sets)
    choice_label: str = ""


def _fs(*names: str) -> frozenset[str]:
    return frozenset(names)


_SUFFIX_WIDTH = {"b": 8, "w": 16, "l": 32, "q": 64}
_ALU_FORMS = ("ir", "im", "rr", "rm", "mr")
_LOGIC = "AND/OR/XOR clear CF and OF (SDM Vol. 2)"
_CC = sorted(CONDITION_ALIASES, key=lambda c: (CONDITION_ALIASES[c], len(c), c))
_ALL_CC_FLAGS = ZF | SF | CF | OF_FLAG


def _alu(op: str, doc: str, flags: int = STATUS) -> Insn:
    return Insn(op, (op,), "bwlq", _ALU_FORMS, 0, flags, _fs(CPU), _fs(CPU), doc, "alu")


ASM: tuple[Insn, ...] = (
    Insn("push", ("push",), "q", ("i", "r", "m"), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "push a word; a push over a live interrupt frame marks it clobbered", "push"),
    Insn("pop", ("pop",), "q", ("r", "m"), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "pop a word; `pop %ss` is #UD in 64-bit code (SDM Vol. 2 POP), allowed in GUEST32 "
         "code with the MOV SS shadow", "pop"),
    Insn("mov", ("mov",), "bwlq", ("ir", "im", "rr", "rm", "mr"), 0, 0, _fs(CPU), _fs(CPU),
         "move; a 32-bit register result zero-extends, 8/16-bit ones merge (SDM Vol. 1 "
         "§3.4.1.1); `mov $imm64, %reg` is the only 64-bit immediate; `mov %ax, %ss` sets "
         "the MOV SS shadow", "mov", imm_bits=64),
    Insn("movabs", ("movabs",), "q", ("ir", "rm", "mr"), 0, 0, _fs(CPU), _fs(CPU),
         "move a 64-bit immediate into a register, or %rax to or from a 64-bit absolute "
         "address", "mov", imm_bits=64),
    Insn("movzx", (), "", ("rr", "mr"), 0, 0, _fs(CPU), _fs(CPU),
         "zero-extend a byte or word (SDM Vol. 2 MOVZX)", "extend",
         spellings={"movzbl": (32, 8), "movzbw": (16, 8), "movzbq": (64, 8),
                    "movzwl": (32, 16), "movzwq": (64, 16)}),
    Insn("movsx", (), "", ("rr", "mr"), 0, 0, _fs(CPU), _fs(CPU),
         "sign-extend a byte, word or doubleword (SDM Vol. 2 MOVSX/MOVSXD)", "extend",
         spellings={"movsbl": (32, 8), "movsbw": (16, 8), "movsbq": (64, 8),
                    "movswl": (32, 16), "movswq": (64, 16), "movslq": (64, 32)}),
    Insn("lea", ("lea",), "lq", ("mr", "pr"), 0, 0, _fs(CPU), _fs(CPU),
         "load an effective address: `n(%reg)`, `(base,index,scale)` or `label(%rip)`", "lea"),
    Insn("xchg", ("xchg",), "bwlq", ("rr", "rm", "mr"), 0, 0, _fs(CPU), _fs(CPU),
         "exchange; with a memory operand it is locked (one atomic step)", "xchg"),
    _alu("add", "add, setting ZF SF CF OF (SDM Vol. 2 ADD)"),
    _alu("sub", "subtract, setting ZF SF CF OF (SDM Vol. 2 SUB)"),
    Insn("adc", ("adc",), "bwlq", _ALU_FORMS, CF, STATUS, _fs(CPU), _fs(CPU),
         "add with carry: dest + src + CF, setting ZF SF CF OF (SDM Vol. 2 ADC)", "alu"),
    Insn("sbb", ("sbb",), "bwlq", _ALU_FORMS, CF, STATUS, _fs(CPU), _fs(CPU),
         "subtract with borrow: dest - (src + CF), setting ZF SF CF OF (SDM Vol. 2 SBB); "
         "`sbb %reg, %reg` is 0 or all ones by CF", "alu"),
    _alu("and", f"bitwise and; {_LOGIC}"),
    _alu("or", f"bitwise or; {_LOGIC}"),
    _alu("xor", f"bitwise exclusive or; {_LOGIC}"),
    Insn("cmp", ("cmp",), "bwlq", _ALU_FORMS, 0, STATUS, _fs(CPU), _fs(CPU),
         "compare (flags of DST - SRC); code addresses compare by their address in source "
         "order", "alu"),
    Insn("test", ("test",), "bwlq", ("ir", "im", "rr", "rm", "mr"), 0, STATUS, _fs(CPU),
         _fs(CPU), "flags of DST & SRC; CF and OF cleared", "alu"),
    Insn("inc", ("inc",), "bwlq", ("r", "m"), 0, ZF | SF | OF_FLAG, _fs(CPU), _fs(CPU),
         "increment; CF unchanged (SDM Vol. 2 INC)", "alu"),
    Insn("dec", ("dec",), "bwlq", ("r", "m"), 0, ZF | SF | OF_FLAG, _fs(CPU), _fs(CPU),
         "decrement; CF unchanged (SDM Vol. 2 DEC)", "alu"),
    Insn("neg", ("neg",), "bwlq", ("r", "m"), 0, STATUS, _fs(CPU), _fs(CPU),
         "two's complement negation; CF = (operand != 0) (SDM Vol. 2 NEG)", "alu"),
    Insn("not", ("not",), "bwlq", ("r", "m"), 0, 0, _fs(CPU), _fs(CPU),
         "one's complement; no flags (SDM Vol. 2 NOT)", "alu"),
    Insn("shl", ("shl", "sal"), "bwlq", ("ir", "im", "rr", "rm", "r", "m"), 0, STATUS,
         _fs(CPU), _fs(CPU), "shift left by an immediate, %cl or 1; CF is the last bit out, "
         "the count is masked to 5 (6) bits and a zero count changes no flag", "alu",
         imm_bits=8),
    Insn("shr", ("shr",), "bwlq", ("ir", "im", "rr", "rm", "r", "m"), 0, STATUS, _fs(CPU),
         _fs(CPU), "logical shift right (as SHL)", "alu", imm_bits=8),
    Insn("sar", ("sar",), "bwlq", ("ir", "im", "rr", "rm", "r", "m"), 0, STATUS, _fs(CPU),
         _fs(CPU), "arithmetic shift right (as SHL)", "alu", imm_bits=8),
    Insn("imul", ("imul",), "wlq", ("rr", "mr", "irr", "imr"), 0, STATUS, _fs(CPU), _fs(CPU),
         "signed multiply, 2 and 3 operands; CF = OF = the product did not fit (SDM Vol. 2 "
         "IMUL; SF and ZF, undefined there, are set from the result)", "alu"),
    Insn("bt", ("bt",), "wlq", ("ir", "rr", "im"), 0, CF, _fs(CPU), _fs(CPU),
         "CF := the selected bit (offset modulo the width) (SDM Vol. 2 BT)", "bt", imm_bits=8),
    Insn("jmp", ("jmp",), "q", ("l", "*"), 0, 0, _fs(CPU), _fs(CPU),
         "jump to a label or routine, or indirectly through a register or memory "
         "(`jmp *%rax`, `jmp *8(%rsp)`, `jmp *table(,%rax,8)`)", "jmp", ends_flow=True),
    Insn("jcc", tuple(f"j{c}" for c in _CC), "", ("l",), _ALL_CC_FLAGS, 0, _fs(CPU), _fs(CPU),
         "jump if the condition holds (SDM Vol. 1 Appendix B); PF is not modelled, so "
         "`jp jnp jpe jpo` are rejected", "jcc"),
    Insn("setcc", tuple(f"set{c}" for c in _CC), "", ("r", "m"), _ALL_CC_FLAGS, 0, _fs(CPU),
         _fs(CPU), "byte := 1 if the condition holds, else 0", "setcc", width=8),
    Insn("cmovcc", tuple(f"cmov{c}" for c in _CC), "wlq", ("rr", "mr"), _ALL_CC_FLAGS, 0,
         _fs(CPU), _fs(CPU), "move if the condition holds; a 32-bit destination is "
         "zero-extended either way (SDM Vol. 2 CMOVcc)", "cmovcc"),
    Insn("call", ("call",), "q", ("l", "*"), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "push the return address and jump (directly or indirectly, as `jmp`)", "call"),
    Insn("ret", ("ret",), "q", ("",), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "pop the return address", "ret", ends_flow=True),
    Insn("pushf", ("pushf",), "q", ("",), STATUS | IF | DF_FLAG | AC_FLAG, 0,
         _fs(CPU, STACK), _fs(CPU, STACK), "push RFLAGS", "pushf"),
    Insn("popf", ("popf",), "q", ("",), 0, STATUS | IF | DF_FLAG | AC_FLAG, _fs(CPU, STACK),
         _fs(CPU, STACK), "pop RFLAGS", "popf"),
    Insn("cli", ("cli",), "", ("",), 0, IF, _fs(CPU), _fs(CPU),
         "IF := 0; #GP(0) at CPL > 0", "cli"),
    Insn("sti", ("sti",), "", ("",), IF, IF, _fs(CPU), _fs(CPU),
         "IF := 1 with the STI shadow; #GP(0) at CPL > 0", "sti"),
    Insn("cld", ("cld",), "", ("",), 0, DF_FLAG, _fs(CPU), _fs(CPU), "DF := 0", "cld"),
    Insn("std", ("std",), "", ("",), 0, DF_FLAG, _fs(CPU), _fs(CPU), "DF := 1", "std"),
    Insn("clac", ("clac",), "", ("",), 0, AC_FLAG, _fs(CPU), _fs(CPU),
         "AC := 0 (SMAP); #UD at CPL > 0 (SDM Vol. 2 CLAC)", "clac"),
    Insn("stac", ("stac",), "", ("",), 0, AC_FLAG, _fs(CPU), _fs(CPU),
         "AC := 1 (SMAP); #UD at CPL > 0 (SDM Vol. 2 STAC)", "stac"),
    Insn("hlt", ("hlt",), "", ("",), 0, 0, _fs(CPU), _fs(CPU),
         "wait for an event; #GP(0) at CPL > 0", "hlt"),
    Insn("nop", ("nop", "pause", "lfence", "mfence", "sfence"), "", ("",), 0, 0, _fs(CPU),
         _fs(CPU), "no operation (the model runs each step atomically and in order, so the "
         "fences order nothing more)", "nop"),
    Insn("iret", ("iret",), "lq", ("",), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "pop RIP, CS, RFLAGS, RSP, SS from wherever RSP points; unblocks NMIs; `iretl` pops "
         "32-bit fields (SDM Vol. 2 IRET)", "iret", ends_flow=True),
    Insn("erets", ("erets",), "", ("",), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "FRED return within ring 0 through the 64-byte frame at RSP (error code, RIP, CS, "
         "RFLAGS, RSP, SS, event data): #UD without CR4.FRED; unblocks NMIs only when the "
         "saved SS word's NMI bit is set (FRED spec §6)", "eret", ends_flow=True),
    Insn("eretu", ("eretu",), "", ("",), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "FRED return to ring 3 through the frame at RSP, swapping the GS bases; #GP(0) at "
         "a stack level above 0 (FRED spec §6)", "eret", ends_flow=True),
    Insn("lkgs", ("lkgs",), "", ("r", "m"), 0, 0, _fs(CPU), _fs(CPU),
         "load the GS selector's descriptor base into IA32_KERNEL_GS_BASE (FRED spec §7)",
         "lkgs", width=16),
    Insn("sysret", ("sysret",), "lq", ("",), 0, 0, _fs(CPU, GLOBAL), _fs(CPU, GLOBAL),
         "RIP := RCX, RFLAGS := R11, CPL 3 (vendor difference on a non-canonical RCX); "
         "`sysretl` returns to compatibility mode with RIP := ECX", "sysret", ends_flow=True),
    Insn("syscall", ("syscall",), "", ("",), 0, IF | DF_FLAG | AC_FLAG, _fs(CPU, GLOBAL),
         _fs(CPU, GLOBAL), "RCX := RIP, R11 := RFLAGS, RFLAGS &= ~FMASK, enter at LSTAR",
         "syscall"),
    Insn("sysenter", ("sysenter",), "", ("",), 0, IF, _fs(CPU, GLOBAL), _fs(CPU, GLOBAL),
         "enter at IA32_SYSENTER_EIP on IA32_SYSENTER_ESP, clearing IF and RF; saves nothing",
         "sysenter"),
    Insn("swapgs", ("swapgs",), "", ("",), 0, 0, _fs(CPU), _fs(CPU),
         "exchange IA32_GS_BASE and IA32_KERNEL_GS_BASE; #GP(0) at CPL > 0", "swapgs"),
    Insn("rdmsr", ("rdmsr",), "", ("",), 0, 0, _fs(CPU), _fs(CPU),
         "EDX:EAX := MSR[ECX]; #GP(0) at CPL > 0 or for an MSR the model does not know",
         "rdmsr"),
    # MEMORY: IA32_FRED_RSPn says where FRED pushes later events' frames, with no
    # instruction in between; a computed value may lie in another CPU's stack.
    Insn("wrmsr", ("wrmsr",), "", ("",), 0, 0, _fs(CPU), _fs(CPU, MEMORY),
         "MSR[ECX] := EDX:EAX; #GP(0) at CPL > 0, for an unknown MSR or a non-canonical "
         "base address", "wrmsr"),
    Insn("verw", ("verw",), "", ("r", "m"), 0, ZF, _fs(CPU), _fs(CPU),
         "ZF := the selector names a writable data segment of the `gdt`/`ldt` with DPL >= "
         "CPL and DPL >= RPL (SDM Vol. 2 VERR/VERW; never faults on the selector); clears "
         "CPU buffers (MDS)", "verw", width=16),
    Insn("lss", ("lss",), "q", ("mr",), 0, 0, _fs(CPU, MEMORY), _fs(CPU),
         "RSP := the 8 bytes at the operand, SS := the next 2, checked as `mov %ax, %ss` "
         "checks it (#GP(0), #GP(selector), #SS(selector)); no interrupt shadow (only MOV SS "
         "and POP SS make one)", "lss"),
    Insn("ud2", ("ud2",), "", ("",), 0, 0, _fs(CPU), _fs(CPU), "raise #UD", "ud2",
         ends_flow=True),
    Insn("int", ("int",), "", ("i",), 0, IF, _fs(CPU, TABLES), _fs(CPU, STACK),
         "software interrupt `$N` (0-255; `$N` may read a variable)", "softint", imm_bits=8),
    Insn("int3", ("int3",), "", ("",), 0, IF, _fs(CPU, TABLES), _fs(CPU, STACK),
         "breakpoint trap #BP", "softint"),
    Insn("into", ("into",), "", ("",), OF_FLAG, IF, _fs(CPU, TABLES), _fs(CPU, STACK),
         "#UD in 64-bit code; in GUEST32 code #OF when OF is set", "softint"),
    Insn("int1", ("int1", "icebp"), "", ("",), 0, IF, _fs(CPU, TABLES), _fs(CPU, STACK),
         "#DB trap", "softint"),
    Insn("lidt", ("lidt",), "", ("n",), 0, 0, _fs(CPU), _fs(CPU),
         "load IDTR with TABLE (or `empty`)", "lidt"),
    Insn("ltr", ("ltr",), "", ("n",), 0, 0, _fs(CPU), _fs(CPU), "load TR with TSS", "ltr"),
    Insn("lgdt", ("lgdt",), "", ("n",), 0, 0, _fs(CPU), _fs(CPU),
         "load GDTR with the design's `gdt TABLE`", "lgdt"),
    Insn("movsq", ("movsq",), "", ("",), 0, 0, _fs(CPU, STACK, MEMORY), _fs(CPU, STACK, MEMORY),
         "`rep movsq`: copy RCX words from RSI to RDI; a live frame inside the source moves "
         "with it", "movsq"),
    Insn("choose", ("choose",), "", ("rr", "mr", "ir"), 0, 0, _fs(CPU, ENV), _fs(CPU),
         "`choose DST, SRC1, SRC2, ...`: the environment picks one source", "choose",
         variadic=True, choice_label="choice {ordinal}"),
    Insn("input", ("input",), "", ("rn", "mn"), 0, 0, _fs(CPU, ENV), _fs(CPU),
         "`input DST, NAME`: DST takes the guest-controlled input NAME", "input"),
)

# Operations the parser makes from other spellings; never written by a design.
DERIVED: tuple[Insn, ...] = (
    Insn("mov_ss", (), "", ("rr", "r"), 0, 0, _fs(CPU, STACK), _fs(CPU, STACK),
         "`mov %ax, %ss` / `pop %ss`: the MOV SS shadow (SDM §6.8.3)", "mov_ss"),
    Insn("mov_cr", (), "", ("rr",), 0, 0, _fs(CPU), _fs(CPU),
         "`mov %reg, %crN` / `mov %crN, %reg` for CR3 and CR4: #GP(0) at CPL > 0 (SDM Vol. 2 "
         "MOV to/from control registers); a CR3 write flushes the TLB, which changes no "
         "modelled memory; CR4 holds MCE (bit 6) and FRED (bit 32)", "mov_cr"),
)


@dataclass(frozen=True)
class Builtin:
    """A pseudo-C built-in statement or a step the pseudo-C compiler emits."""

    op: str  # "c.NAME"
    args: tuple[int, int]  # min and max arguments (written ones; -1: not writable)
    reads: frozenset[str]
    writes: frozenset[str]
    doc: str
    semantics: str
    choice_label: str = ""  # as Insn.choice_label


def _c(name: str, lo: int, hi: int, reads: frozenset[str], writes: frozenset[str],
       doc: str, semantics: str = "", choice_label: str = "") -> Builtin:
    return Builtin(f"c.{name}", (lo, hi), reads, writes, doc, semantics or f"c_{name}",
                   choice_label)


BUILTIN_TABLE: tuple[Builtin, ...] = (
    _c("set_gate", 3, 6, _fs(TABLES), _fs(TABLES), "rewrite a gate", "c_set_gate"),
    _c("set_gate_ist", 3, 3, _fs(TABLES), _fs(TABLES), "rewrite only a gate's IST field"),
    _c("set_ist", 3, 3, _fs(TABLES), _fs(TABLES), "rewrite a TSS IST slot"),
    _c("set_rsp0", 2, 2, _fs(TABLES), _fs(TABLES), "rewrite a TSS RSP0 slot"),
    _c("copy_idt", 2, 2, _fs(TABLES), _fs(TABLES), "copy every gate of one IDT over another"),
    _c("lidt", 1, 1, _fs(CPU), _fs(CPU), "load IDTR"),
    _c("ltr", 1, 1, _fs(CPU), _fs(CPU), "load TR"),
    _c("send_nmi", 1, 1, _fs(CPU, ENV), _fs(OTHER_CPU),
       "an NMI IPI through the ICR (SELF and ALL are invalid: every outcome is explored)",
       choice_label="destinations {ordinal}"),
    _c("halt", 0, 0, _fs(CPU), _fs(CPU), "HLT"),
    _c("cli", 0, 0, _fs(CPU), _fs(CPU), "CLI"),
    _c("sti", 0, 0, _fs(CPU), _fs(CPU), "STI"),
    _c("clear_mcip", 0, 0, _fs(CPU), _fs(CPU), "write MCG_STATUS with MCIP clear"),
    _c("write_cr4_mce", 1, 1, _fs(CPU), _fs(CPU), "set or clear CR4.MCE"),
    _c("frame_moved", 2, 2, _fs(CPU, STACK, MEMORY), _fs(CPU, STACK, MEMORY),
       "hand-off: this CPU's live frame at FROM was copied to TO, and returns through TO"),
    _c("free_init", 0, 0, _fs(CODE), _fs(CODE, GLOBAL), "free the .init sections"),
    _c("wait_until", 1, 1, _fs(GLOBAL, VARS), _fs(CPU), "block until a condition holds"),
    _c("wait_timeout", 1, 1, _fs(GLOBAL, VARS), _fs(CPU, GLOBAL),
       "block until a condition holds, or time out"),
    _c("atomic_inc", 1, 1, _fs(VARS), _fs(VARS), "one-step increment", "c_assign"),
    _c("atomic_dec", 1, 1, _fs(VARS), _fs(VARS), "one-step decrement", "c_assign"),
    _c("atomic_set", 2, 2, _fs(VARS), _fs(VARS), "one-step store", "c_assign"),
    _c("assert", 1, 1, _fs(VARS, GLOBAL), _fs(GLOBAL), "record an incident when false"),
    _c("nop", 0, 0, _fs(CPU), _fs(CPU), "a step that does nothing"),
    _c("choose", 2, 16, _fs(ENV), _fs(VARS), "the environment picks a variable's value",
       choice_label="choice {ordinal}"),
    _c("choose_range", 3, 3, _fs(ENV), _fs(VARS), "the environment picks from a range",
       choice_label="choice {ordinal}"),
    _c("input", 2, 2, _fs(ENV), _fs(VARS), "a variable takes a guest-controlled input"),
    _c("stop", 0, 0, _fs(CPU), _fs(CPU), "the CPU stops for good"),
    # emitted by the pseudo-C compiler, not written as calls
    _c("assign", -1, -1, _fs(VARS), _fs(VARS), "`x = e` (and `+=`, `++`, ...)"),
    _c("assign_index", -1, -1, _fs(VARS), _fs(VARS), "`a[i] = e`"),
    _c("store", -1, -1, _fs(VARS), _fs(CPU, MEMORY, PERCPU),
       "`%reg = e`, `mem(ADDR) = e`, `per_cpu(x, i) = e`"),
    _c("branch_false", -1, -1, _fs(VARS), _fs(CPU), "an `if`/`while` test"),
    _c("atomic_begin", -1, -1, _fs(GLOBAL), _fs(GLOBAL), "`atomic {`: the block is one step"),
    _c("atomic_end", -1, -1, _fs(CPU), _fs(CPU), "the `}` of an atomic block"),
    _c("fell_off", -1, -1, _fs(CPU), _fs(CPU, GLOBAL), "ran off a routine's end: #UD"),
)

# What designs write as `name(...)`: name -> (min args, max args).
BUILTINS: dict[str, tuple[int, int]] = {
    b.op[2:]: b.args for b in BUILTIN_TABLE if b.args[0] >= 0
}

BY_OP: dict[str, Insn] = {e.op: e for e in ASM + DERIVED}
BUILTIN_BY_OP: dict[str, Builtin] = {b.op: b for b in BUILTIN_TABLE}
# Steps the environment resolves (one transition per choice: `choose`, `input`, VERW's ZF).
CHOICE_OPS: frozenset[str] = frozenset(
    [e.op for e in BY_OP.values() if ENV in e.reads | e.writes]
    + [b.op for b in BUILTIN_TABLE if ENV in b.reads | b.writes]
)
# How traces name the pick of those steps (op -> Insn.choice_label), where they name it.
CHOICE_LABELS: dict[str, str] = {
    e.op: e.choice_label for e in list(BY_OP.values()) + list(BUILTIN_TABLE) if e.choice_label
}


def _spellings() -> dict[str, tuple[Insn, int | None, int | None]]:
    """Every mnemonic the assembler accepts -> (entry, width or None, source width)."""
    out: dict[str, tuple[Insn, int | None, int | None]] = {}
    for e in ASM:
        for spelling, (w, src) in e.spellings.items():
            out[spelling] = (e, w, src)
        for m in e.mnemonics:
            out.setdefault(m, (e, None, None))
            for s in e.sizes:
                out.setdefault(m + s, (e, _SUFFIX_WIDTH[s], None))
    # `movsq` is the string move, not `movs` + q; `movabsq` is `movabs`.
    out["movsq"] = (BY_OP["movsq"], None, None)
    return out


MNEMONICS: dict[str, tuple[Insn, int | None, int | None]] = _spellings()
CONDITION_OPS = frozenset({"jcc", "setcc", "cmovcc"})


def condition_of(mnemonic: str, entry: Insn) -> str:
    """The canonical condition code a jcc/setcc/cmovcc spelling tests (`jnae` -> `b`)."""
    stem = {"jcc": "j", "setcc": "set", "cmovcc": "cmov"}[entry.op]
    cc = mnemonic[len(stem):]
    if cc not in CONDITION_ALIASES and entry.sizes and cc[-1:] in entry.sizes:
        cc = cc[:-1]
    return CONDITION_ALIASES[cc]


def flags_read(ins: Instr) -> int:
    e = BY_OP.get(ins.op)
    if e is None:
        return 0
    if e.op in CONDITION_OPS:
        return CONDITION_FLAGS[ins.cc]
    return e.flags_read


# -- effects of one parsed instruction ---------------------------------------------------------


def _operand_effects(arg: object, per_cpu_stacks: frozenset[str]) -> set[str]:
    if isinstance(arg, Indirect):
        return _operand_effects(arg.target, per_cpu_stacks)
    if isinstance(arg, Mem):
        if arg.seg == "gs":
            return {PERCPU}
        if arg.sym is not None:
            return {VARS} if arg.base is None and arg.index is None else {VARS, MEMORY}
        if arg.base == "rsp" and arg.index is None:
            return {STACK}
        return {MEMORY}
    if isinstance(arg, Abs):
        # `top(primary)-8`: a word of a named stack is judged by its name; any other
        # absolute address may be anybody's memory.
        tops = [n for n in walk(arg.expr) if isinstance(n, StackTop)]
        vars_ = [n for n in walk(arg.expr) if isinstance(n, (Var, Index))]
        if tops and not vars_ and all(t.stack.split("[")[0] in per_cpu_stacks for t in tops):
            return {STACK}
        return {MEMORY}
    return set()


def effects(ins: Instr, per_cpu_stacks: frozenset[str] = frozenset()) -> frozenset[str]:
    """Everything `ins` may read or write: its entry's sets, what its memory operands
    reach, and memory that expressions read (`mem(ADDR)`)."""
    e = BY_OP.get(ins.op)
    b = BUILTIN_BY_OP.get(ins.op)
    if e is not None:
        out = set(e.reads | e.writes)
    elif b is not None:
        out = set(b.reads | b.writes)
    else:
        return frozenset(EFFECTS)  # unknown: everything
    for arg in ins.args:
        out |= _operand_effects(arg, per_cpu_stacks)
    for node in walk(ins.args):
        if isinstance(node, Call) and node.name == "mem":
            out.add(MEMORY)
        if isinstance(node, (Mem, Abs)):
            out |= _operand_effects(node, per_cpu_stacks)
    if ins.op == "xchg" and any(isinstance(a, (Mem, Abs)) for a in ins.args):
        out.add(MEMORY)  # a locked read-modify-write
    return frozenset(out)


# -- the reference table in docs/design-language.md ---------------------------------------------
_FLAG_NAMES = ((CF, "CF"), (ZF, "ZF"), (SF, "SF"), (OF_FLAG, "OF"), (IF, "IF"),
               (DF_FLAG, "DF"), (AC_FLAG, "AC"))
_KIND_NAMES = {"i": "imm", "r": "reg", "m": "mem", "l": "label", "*": "*target",
               "p": "label(%rip)", "n": "name"}


def _flags(bits: int) -> str:
    return " ".join(n for b, n in _FLAG_NAMES if bits & b) or "-"


def _forms(e: Insn) -> str:
    shown = []
    for f in e.forms:
        shown.append(", ".join(_KIND_NAMES[k] for k in f) if f else "-")
    return "; ".join(shown) + (", ..." if e.variadic else "")


def reference_markdown() -> str:
    """The instruction reference table of docs/design-language.md, from the table."""
    rows = ["| instructions | operands | flags read | flags written | reads / writes | "
            "semantics |", "|---|---|---|---|---|---|"]
    for e in ASM:
        spell = sorted(e.spellings) if e.spellings else list(e.mnemonics)
        words = " ".join(spell)
        sizes = f" (`{'`/`'.join(e.sizes)}`)" if e.sizes else ""
        if e.op == "movsq":
            words = "rep movsq"
        effects_text = ", ".join(sorted(e.reads)) + " / " + ", ".join(sorted(e.writes))
        rows.append(
            f"| `{words}`{sizes} | {_forms(e)} | {_flags(e.flags_read)} | "
            f"{_flags(e.flags_written)} | {effects_text} | {e.doc} |"
        )
    return "\n".join(rows)


def builtin_markdown() -> str:
    """The effects of the pseudo-C built-ins (the doc's built-in table has their syntax)."""
    rows = ["| statement | reads / writes | meaning |", "|---|---|---|"]
    for b in BUILTIN_TABLE:
        effects_text = ", ".join(sorted(b.reads)) + " / " + ", ".join(sorted(b.writes))
        rows.append(f"| `{b.op[2:]}` | {effects_text} | {b.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - `python -m model.lang.isa` prints the tables
    print(reference_markdown())
    print()
    print(builtin_markdown())
