"""Supervisor-mode access prevention (CR4.SMAP).

SDM Vol. 3A §4.6.1 (Determination of Access Rights): an access made at CPL < 3 is a
supervisor-mode access. Implicit ones (to the GDT, LDT, IDT, TSS) are never allowed to
user-mode pages under SMAP; the others ("explicit supervisor-mode accesses") may read or
write a user-mode page only while EFLAGS.AC = 1. With CR4.SMAP = 1 and AC = 0, "data may
not be written to any user-mode address" nor read from one: the access raises #PF
(§4.7: error code P=1, W/R, U/S=0).

The model's user-mode pages are the memory a guest controls: the lower canonical half
outside the design's hypervisor stacks, and stacks declared `owner guest`.

The pushes of an event delivery onto a CPL 0 stack are made at CPL 0 and are not accesses
to a system data structure, so §4.6.1 classes them as explicit: they fault when AC = 0 (the
usual case: SYSCALL's FMASK clears AC in Xen and Linux), and are allowed when AC = 1 (a
delivery inside a STAC region). The SDM lists implicit accesses only by example; when
AC = 1 treating them as explicit is the choice that can write guest memory, so it is the
one that cannot hide a frame written there.
"""

from __future__ import annotations

from checker.symbolic import Term
from model.x86.arch import AC_FLAG, PF
from model.x86.memory import ArchFault, Where, classify
from model.x86.state import CodeAddr, Platform, Value, flag_set

# #PF error code bits (SDM §4.7): present, write, user.
PF_PRESENT = 1 << 0
PF_WRITE = 1 << 1


def user_page(platform: Platform, address: Value, where: Where | None = None) -> bool:
    """Is `address` on a user-mode page (guest-controlled memory)? A symbolic address is
    decided, unless `where` already says where it lies."""
    if isinstance(address, CodeAddr):
        return False
    kind, region = where if where is not None else classify(platform, address)
    if region is not None:
        return region.owner == "guest"
    return kind == "guest"


def check(
    platform: Platform, address: Value, cpl: int, rflags: int | Term, write: bool,
    where: Where | None = None,
) -> None:
    """Raise the #PF an explicit supervisor-mode access to `address` takes under SMAP."""
    if not platform.smap or cpl == 3 or flag_set(rflags, AC_FLAG):
        return
    if user_page(platform, address, where):
        shown = f"{address:#x}" if isinstance(address, int) else repr(address)
        code = PF_PRESENT | (PF_WRITE if write else 0)
        kind = "write to" if write else "read from"
        raise ArchFault(
            PF, code, f"SMAP: supervisor {kind} user page {shown}", address=address
        )
