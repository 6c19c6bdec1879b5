"""A small classic-BPF machine for the unit tests of our socket filters.

It runs just the instructions :mod:`vnicbond.system.bpf` assembles, with the kernel's
semantics where they matter: a load past the end of the frame ends the program with 0 (drop),
arithmetic wraps at 32 bits, jumps are relative to the next instruction. :func:`check` applies
the kernel's checker rules (sk_chk_filter / bpf_check_classic): known opcodes, jumps inside the
program, a return at the end. The kernel's own acceptance is tested separately by attaching the
programs to a socket.
"""

from __future__ import annotations

Program = list[tuple[int, int, int, int]]

LDW, LDH, LDB = 0x20, 0x28, 0x30
LDWI, LDHI, LDBI = 0x40, 0x48, 0x50
LDLEN = 0x80
LDXMSH = 0xB1
SUBX = 0x1C
JEQ, JGE, JSET = 0x15, 0x35, 0x45
RET = 0x06
JUMPS = (JEQ, JGE, JSET)
KNOWN = (LDW, LDH, LDB, LDWI, LDHI, LDBI, LDLEN, LDXMSH, SUBX, *JUMPS, RET)
MASK = 0xFFFFFFFF


def check(prog: Program) -> None:
    """Raise AssertionError where the kernel's checker would refuse ``prog``."""
    assert 1 <= len(prog) <= 4096
    for pc, (code, jt, jf, k) in enumerate(prog):
        assert code in KNOWN, f"unknown opcode {code:#x} at {pc}"
        assert 0 <= k <= MASK
        if code in JUMPS:
            assert 0 <= jt < 256 and 0 <= jf < 256, pc
            assert pc + 1 + max(jt, jf) < len(prog), f"jump out of the program at {pc}"
    assert prog[-1][0] == RET


def run(prog: Program, pkt: bytes) -> int:
    """What the program returns for ``pkt``: 0 drops it, n keeps its first n bytes."""
    check(prog)
    a = x = 0
    pc = 0
    n = len(pkt)

    def load(offset: int, size: int) -> int | None:
        if offset < 0 or offset + size > n:
            return None
        return int.from_bytes(pkt[offset:offset + size], "big")

    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        value: int | None
        if code in (LDW, LDH, LDB):
            value = load(k, {LDW: 4, LDH: 2, LDB: 1}[code])
            if value is None:
                return 0
            a = value
        elif code in (LDWI, LDHI, LDBI):
            value = load(x + k, {LDWI: 4, LDHI: 2, LDBI: 1}[code])
            if value is None:
                return 0
            a = value
        elif code == LDLEN:
            a = n
        elif code == LDXMSH:
            value = load(k, 1)
            if value is None:
                return 0
            x = 4 * (value & 0xF)
        elif code == SUBX:
            a = (a - x) & MASK
        elif code == JEQ:
            pc += jt if a == k else jf
        elif code == JGE:
            pc += jt if a >= k else jf
        elif code == JSET:
            pc += jt if a & k else jf
        elif code == RET:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
