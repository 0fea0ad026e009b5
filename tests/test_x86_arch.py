"""Architectural constants and small pure functions (SDM Vol. 1 §3.3.7.1 canonical
addressing, Vol. 3A §6.13 error codes, Table 6-1 vectors) plus stack-memory properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model.x86.arch import ERROR_CODE_VECTORS, idt_error_code, is_canonical
from model.x86.memory import GUEST_MEMORY, ArchFault, check_access, read, region_name, write
from model.x86.state import CodeAddr
from tests.x86_helpers import GUEST_STACK, make_machine, platform

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def canonical_by_sign_extension(address: int) -> bool:
    """SDM Vol. 1 §3.3.7.1: bits 63 through 47 all zeros or all ones (48-bit linear
    addresses)."""
    top = address >> 47
    return top == 0 or top == (1 << 17) - 1


@given(U64)
def test_is_canonical_matches_sign_extension(address):
    """SDM Vol. 1 §3.3.7.1 canonical addressing."""
    assert is_canonical(address) is canonical_by_sign_extension(address)


@given(st.integers(min_value=-(1 << 63), max_value=-1))
def test_is_canonical_of_negative_python_ints_is_the_64bit_value(value):
    """SDM Vol. 1 §3.3.7: linear addresses are 64-bit, so RSP arithmetic that goes below 0 in
    Python denotes the value modulo 2^64."""
    assert is_canonical(value) is canonical_by_sign_extension(value & ((1 << 64) - 1))


def test_canonical_boundaries():
    """SDM Vol. 1 §3.3.7.1: 0x00007FFFFFFFFFFF and 0xFFFF800000000000 are the edges."""
    assert is_canonical(0x0000_7FFF_FFFF_FFFF)
    assert not is_canonical(0x0000_8000_0000_0000)
    assert not is_canonical(0xFFFF_7FFF_FFFF_FFFF)
    assert is_canonical(0xFFFF_8000_0000_0000)


@given(st.integers(min_value=0, max_value=255), st.booleans())
def test_idt_error_code_layout(vector, ext):
    """SDM §6.13 Figure 6-6: bit 0 EXT, bit 1 IDT, bits 3-15 the index."""
    code = idt_error_code(vector, ext)
    assert code & 1 == int(ext)
    assert code & 2 == 2
    assert code >> 3 == vector


def test_error_code_vector_set():
    """SDM Table 6-1: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP push error codes."""
    assert frozenset({8, 10, 11, 12, 13, 14, 17, 21}) == ERROR_CODE_VECTORS


@given(st.lists(st.tuples(st.integers(0, 0x1FF), st.integers(0, 1 << 64)), max_size=20))
def test_write_then_read_round_trips(stores):
    """Model rule (model/x86/memory.py): stack memory is a word map; the last store to an
    address wins and never-written words read 0."""
    p = platform()
    m = make_machine(p)
    expected: dict[int, int] = {}
    for slot, value in stores:
        address = GUEST_STACK.lo + 8 * slot
        m = write(p, m, address, value, 3)
        expected[address] = value
    for slot in range(0x200):
        address = GUEST_STACK.lo + 8 * slot
        assert read(m, address) == expected.get(address, 0)
    assert [a for a, _ in m.memory] == sorted(expected)


@given(U64)
def test_stack_access_faults_by_address_class(address):
    """SDM §6.14.4 / Vol. 1 §3.3.7.1: a non-canonical stack access is #SS; an unmapped
    upper-half address is #PF; the lower half is guest memory (a PV guest is mapped)."""
    p = platform()
    name = region_name(p, address)
    try:
        check_access(p, address, 0)
    except ArchFault as fault:
        if not canonical_by_sign_extension(address):
            assert fault.vector == 12
        else:
            assert fault.vector == 14 and name == "unmapped"
        return
    assert canonical_by_sign_extension(address)
    assert name != "unmapped"
    if address < 1 << 47:
        assert name in (GUEST_MEMORY, GUEST_STACK.name)


def test_user_access_to_hypervisor_stack_is_pf():
    """SDM §4.6: a CPL 3 access to a supervisor page is a #PF with U/S=1."""
    p = platform()
    try:
        check_access(p, p.region("primary").top - 8, 3)
    except ArchFault as fault:
        assert fault.vector == 14 and fault.error_code & 4
    else:
        raise AssertionError("no fault")


def test_code_address_as_stack_pointer_is_ss():
    """Model rule (memory.check_access): a code address in RSP is treated like a
    non-canonical stack address, #SS (SDM §6.14.4)."""
    p = platform()
    try:
        check_access(p, CodeAddr("x", 0), 0)  # type: ignore[arg-type]
    except ArchFault as fault:
        assert fault.vector == 12
    else:
        raise AssertionError("no fault")
