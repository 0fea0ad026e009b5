/*
 * x86.pml -- the architectural layer shared by kexec.pml and ist.pml.
 *
 * A hand translation of what the checker's model/x86 does for the instructions and events
 * these two designs use, kept word for word where it decides a verdict or tells two states
 * apart: stack words (model/x86/memory.py: write, pop, forget, move_rsp, copy_words), the
 * live interrupt frames and their `clobbered` mark (memory.py write), IDT delivery with the
 * IST/RSP0 stack switch, the 16-byte alignment and the five-word frame
 * (model/x86/delivery.py _enter_handler), IRET (model/x86/instructions.py iret), the NMI
 * latch and MCIP (model/x86/events.py), and the per-CPU action rules of
 * model/system/transition.py _base_actions.
 *
 * The including design file defines, before including this file: NCPU, NSTK (stacks per
 * CPU that code can write), DEPTH (words modelled per stack), MAXF (live frames at once)
 * and RSP0_STACK (the stack TSS.RSP0 names); after including it, and before its proctype,
 * the inlines `gate(c, vec)` (sets t_rt to the handler's first pc or NOGATE and t_ist to
 * the gate's IST index) and `ist_stack(n)` (sets t_s to the stack TSS.IST[n] names).
 * Every d_step of the design ends with CLEAN (below).
 *
 * Every step of a CPU is one Promela d_step (one state to the next, no intermediate state
 * stored), as every action of the checker is one transition; temporaries are zeroed at the
 * end of every step (CLEAN), so a Promela state holds exactly what the checker's SysState
 * holds for these designs, in another encoding:
 *
 *   checker (model/x86/state.py)          here
 *   Cpu.pc   CodeAddr(routine, index)     pc[c]     one number per design step
 *   Cpu.run  RUNNING/HALTED/SHUTDOWN      runst[c]
 *   Cpu.rflags (IF, ZF, SF; CF/OF stay 0) fl[c]     F_IF | F_ZF | F_SF
 *   Cpu.cpl, rsp, nmi_blocked,            cpl[c], rsp[c], nmi_blk[c],
 *       nmi_pending, mcip, ipi_nmi            nmi_pend[c], mcip[c], ipi[c]
 *   Machine.memory  ((address, value),..) mem[]     V_ABSENT where the checker has no entry
 *   Machine.frames  (Frame, ...) in order f_*[0 .. nf-1], same order: by CPU, oldest
 *                                                   first within a CPU (sort_frames)
 *   SysState.budgets                      nmi_b[c], mce_b[c], ext_b[c], faults_b
 *
 * Values (a byte each). An address is a stack and a word count below its top: the checker's
 * stacks are 16-byte aligned regions, so top - 8*K is 16-byte aligned iff K is even.
 */

#define RUNNING  0
#define HALTED   1
#define SHUTDOWN 2

/* RFLAGS bits this model keeps (RFLAGS_FIXED is implied). CF and OF are never set by the
 * arithmetic of these designs (cmpl of equal or smaller vectors, testb, addq to an
 * upper-half stack address), so they stay 0 as in the checker. */
#define F_IF 1
#define F_ZF 2
#define F_SF 4

#define V_ABSENT 0    /* no word stored at that address: reads as the integer 0 */
#define V_INT0   1    /* the integer 0 (stored: `pushq $0`, a zero register) */
#define V_INT2   2
#define V_INT3   3
#define V_INT10  4
#define V_INT14  5
#define V_INT18  6
#define V_HI2    7    /* 2 << 32: `movl $2, 4(%rsp)` over a zero word (the vector in the */
#define V_HI3    8    /*          upper half of the error-code word)                      */
#define V_HI14   9
#define V_HI18   10
#define V_HCS    11   /* 0xe008 __HYPERVISOR_CS (pushed by delivery or by `pushq $__HYPERVISOR_CS`) */
#define V_HSS    12   /* 0xe010 */
#define V_GCS    13   /* 0xe033 a 64-bit guest's CS (RPL 3) */
#define V_GSS    14   /* 0xe02b */
#define V_FLAGS  16   /* 16 + (F_IF|F_ZF|F_SF): an RFLAGS image */
#define V_CODE   24   /* 24 + pc: a code address (return address, saved RIP) */
#define V_ADDR   128  /* 128 + stack*SLOTS + K: the address top(stack) - 8*K */
#define SLOTS    24

#define ADDR(s,k)   (V_ADDR + (s)*SLOTS + (k))
#define STK(a)      (((a) - V_ADDR) / SLOTS)
#define KOF(a)      (((a) - V_ADDR) % SLOTS)
#define IS_ADDR(v)  ((v) >= V_ADDR)
#define IS_CODE(v)  ((v) >= V_CODE && (v) < V_ADDR)
#define IS_FLAGS(v) ((v) >= V_FLAGS && (v) < V_CODE)
#define CODE(p)     (V_CODE + (p))
#define MI(c,a)     (((c)*NSTK + STK(a))*DEPTH + KOF(a) - 1)

#define NOGATE 255

/* A situation the checker would handle but these runs never reach (a clobbered frame
 * being returned through, a stack overflowing the words modelled). The script tells
 * these apart from property violations by the name model_ok in pan's message. */
byte model_ok = 1;
#define CHECK(e) assert((e) && model_ok)

/* -- state ---------------------------------------------------------------------------- */
byte pc[NCPU];
byte runst[NCPU];
byte fl[NCPU];
byte cpl[NCPU];
bit  nmi_blk[NCPU];
bit  nmi_pend[NCPU];
bit  ipi[NCPU];
bit  mcip[NCPU];
byte rsp[NCPU];
byte mem[NCPU*NSTK*DEPTH];

/* Machine.frames: cpu, vector+source (FK_*), lo (the saved-RIP word), from_cpl == 3,
 * clobbered. Slots nf.. are all zero. */
byte nf;
byte f_cpu[MAXF];
byte f_lo[MAXF];
byte f_kind[MAXF];
bit  f_guest[MAXF];
bit  f_clob[MAXF];
/* How many live frames are clobbered: derived from f_clob (adds no state), read by the
 * claims as the checker's `frame_clobbered`. */
byte nclob;

#define FK_NMI   1    /* vector 2, source nmi */
#define FK_MCE   2    /* vector 18, source machine-check */
#define FK_EXT2  3    /* vector 2, source external (a fake NMI) */
#define FK_EXT18 4    /* vector 18, source external (a fake #MC) */
#define FK_PF    5    /* vector 14, source exception */
#define FK_BP    6    /* vector 3, source exception */

/* Temporaries of one step. pan's breadth-first search refuses `hidden` variables, so they
 * are ordinary globals that every step zeroes when it ends (CLEAN): between steps they are
 * always 0 and tell no states apart. */
byte t_a, t_j, t_m, t_o, t_p, t_v, t_s, t_new, t_rt, t_ist, t_rip, t_cs, t_fl, t_rs;
byte t_src, t_dst, t_n, t_k, t_x, t_y, t_z;
byte t_w[10];
#define CLEAN_W t_w[0] = 0; t_w[1] = 0; t_w[2] = 0; t_w[3] = 0; t_w[4] = 0; \
                t_w[5] = 0; t_w[6] = 0; t_w[7] = 0; t_w[8] = 0; t_w[9] = 0
#define CLEAN t_a = 0; t_j = 0; t_m = 0; t_o = 0; t_p = 0; t_v = 0; t_s = 0; t_new = 0; \
              t_rt = 0; t_ist = 0; t_rip = 0; t_cs = 0; t_fl = 0; t_rs = 0; \
              t_src = 0; t_dst = 0; t_n = 0; t_k = 0; t_x = 0; t_y = 0; t_z = 0; CLEAN_W

/* -- memory (model/x86/memory.py) ------------------------------------------------------ */

/* drop frame idx, keeping the order of the others (a tuple filter) */
inline drop_frame(idx) {
  if
  :: f_clob[idx] -> nclob--
  :: else -> skip
  fi;
  t_m = idx;
  do
  :: t_m + 1 < nf ->
     f_cpu[t_m] = f_cpu[t_m + 1]; f_lo[t_m] = f_lo[t_m + 1]; f_kind[t_m] = f_kind[t_m + 1];
     f_guest[t_m] = f_guest[t_m + 1]; f_clob[t_m] = f_clob[t_m + 1];
     t_m++
  :: else -> break
  od;
  nf--;
  f_cpu[nf] = 0; f_lo[nf] = 0; f_kind[nf] = 0; f_guest[nf] = 0; f_clob[nf] = 0
}

/* state.py Machine.frames is ordered by CPU, oldest first within a CPU: a frame delivered
 * (state.py with_frame) or moved (memory.py copy_words, a stable sort) becomes its CPU's
 * newest. Callers append at nf, after frames already in that order, and call this: a
 * stable insertion sort on f_cpu, which moves each appended frame back past the frames of
 * higher-numbered CPUs only. */
#define SWAP_F(arr, i, j) t_z = arr[i]; arr[i] = arr[j]; arr[j] = t_z
inline sort_frames() {
  t_x = 1;
  do
  :: t_x < nf ->
     t_y = t_x;
     do
     :: t_y > 0 && f_cpu[t_y - 1] > f_cpu[t_y] ->
        SWAP_F(f_cpu, t_y - 1, t_y); SWAP_F(f_lo, t_y - 1, t_y);
        SWAP_F(f_kind, t_y - 1, t_y); SWAP_F(f_guest, t_y - 1, t_y);
        SWAP_F(f_clob, t_y - 1, t_y);
        t_y--
     :: else -> break
     od;
     t_x++
  :: else -> break
  od
}

/* memory.py write(): store one word; every live frame it lands on is clobbered. A frame
 * whose saved RIP is word K covers words K, K-1, .., K-4 (RIP, CS, RFLAGS, RSP, SS). */
inline wr(c, a, v) {
  CHECK(IS_ADDR(a) && STK(a) < NSTK && KOF(a) >= 1 && KOF(a) <= DEPTH);
  mem[MI(c, a)] = v;
  t_j = 0;
  do
  :: t_j < nf ->
     if
     :: f_cpu[t_j] == c && !f_clob[t_j] && STK(f_lo[t_j]) == STK(a) &&
           KOF(a) <= KOF(f_lo[t_j]) && KOF(a) + 4 >= KOF(f_lo[t_j]) ->
        f_clob[t_j] = 1; nclob++
     :: else -> skip
     fi;
     t_j++
  :: else -> break
  od
}

/* memory.py read(): a word never written reads as 0 (result in t_v) */
inline rd(c, a) {
  CHECK(IS_ADDR(a) && STK(a) < NSTK && KOF(a) >= 1 && KOF(a) <= DEPTH);
  t_v = mem[MI(c, a)];
  if
  :: t_v == V_ABSENT -> t_v = V_INT0
  :: else -> skip
  fi
}

/* memory.py move_rsp(): raising RSP within one stack abandons the frames it passes */
inline move_rsp(c, newv) {
  t_o = rsp[c];
  rsp[c] = newv;
  if
  :: IS_ADDR(t_o) && IS_ADDR(rsp[c]) && STK(t_o) == STK(rsp[c]) && KOF(rsp[c]) < KOF(t_o) ->
     t_j = 0;
     do
     :: t_j < nf ->
        if
        :: f_cpu[t_j] == c && STK(f_lo[t_j]) == STK(t_o) &&
              KOF(f_lo[t_j]) > KOF(rsp[c]) && KOF(f_lo[t_j]) <= KOF(t_o) -> drop_frame(t_j)
        :: else -> t_j++
        fi
     :: else -> break
     od
  :: else -> skip
  fi
}

/* memory.py push(): RSP -= 8, then store */
inline push(c, v) {
  CHECK(IS_ADDR(rsp[c]));
  t_p = rsp[c] + 1;
  wr(c, t_p, v);
  rsp[c] = t_p
}

/* memory.py pop(): load, forget the word, RSP += 8 (result in t_v) */
inline pop(c) {
  rd(c, rsp[c]);
  mem[MI(c, rsp[c])] = V_ABSENT;
  move_rsp(c, rsp[c] - 1)
}

/* `movl $imm32, 4(%rsp)`: the upper half of the word at RSP (interp.py _store, size 4);
 * the word is always the zero the entry stub or the delivery just pushed. */
inline movl_hi(c, hv) {
  rd(c, rsp[c]);
  CHECK(t_v == V_INT0);
  wr(c, rsp[c], hv)
}

/* `ret` (interp.py): pop a code address, #GP otherwise (never reached here) */
inline ret(c) {
  pop(c);
  CHECK(IS_CODE(t_v));
  pc[c] = t_v - V_CODE
}

inline call(c, target, retpc) {
  push(c, CODE(retpc));
  pc[c] = target
}

/* -- IRET (instructions.py iret) ------------------------------------------------------- */
inline iret(c) {
  nmi_blk[c] = 0;                       /* every IRET unblocks NMIs (SDM 6.7.1) */
  t_a = rsp[c];
  CHECK(IS_ADDR(t_a) && KOF(t_a) >= 5);
  rd(c, t_a);     t_rip = t_v;
  rd(c, t_a - 1); t_cs = t_v;
  rd(c, t_a - 2); t_fl = t_v;
  rd(c, t_a - 3); t_rs = t_v;
  CHECK(IS_CODE(t_rip) && IS_FLAGS(t_fl) && IS_ADDR(t_rs) &&
           (t_cs == V_HCS && cpl[c] == 0 || t_cs == V_GCS));
  /* the frame at RSP is consumed, whoever pushed it */
  t_j = 0;
  do
  :: t_j < nf ->
     if
     :: f_cpu[t_j] == c && f_lo[t_j] == t_a -> drop_frame(t_j)
     :: else -> t_j++
     fi
  :: else -> break
  od;
  mem[MI(c, t_a)] = V_ABSENT; mem[MI(c, t_a - 1)] = V_ABSENT; mem[MI(c, t_a - 2)] = V_ABSENT;
  mem[MI(c, t_a - 3)] = V_ABSENT; mem[MI(c, t_a - 4)] = V_ABSENT;
  if
  :: t_cs == V_GCS -> cpl[c] = 3
  :: else -> cpl[c] = 0
  fi;
  pc[c] = t_rip - V_CODE;
  fl[c] = t_fl - V_FLAGS;
  rsp[c] = t_rs;
  runst[c] = RUNNING;
  if
  :: cpl[c] == 3 ->                     /* _returned_to_guest: guest frames are done */
     t_j = 0;
     do
     :: t_j < nf ->
        if
        :: f_cpu[t_j] == c && f_guest[t_j] -> drop_frame(t_j)
        :: else -> t_j++
        fi
     :: else -> break
     od
  :: else -> skip
  fi
}

/* -- delivery (delivery.py deliver / _enter_handler) ----------------------------------- */
/* vec: 2, 18, 14 or 3; kind: FK_*; retpc: the RIP the frame saves */
inline deliver(c, vec, kind, retpc) {
  gate(c, vec);
  CHECK(t_rt != NOGATE);
  if
  :: t_ist != 0 || cpl[c] > 0 ->        /* IST, or a privilege change: the TSS's stack */
     if
     :: t_ist != 0 -> ist_stack(t_ist)
     :: else -> t_s = RSP0_STACK
     fi;
     t_new = ADDR(t_s, 0)
  :: else -> t_new = rsp[c]
  fi;
  CHECK(IS_ADDR(t_new));
  if
  :: KOF(t_new) % 2 == 1 -> t_new++     /* SDM 6.14.2: RSP aligned down to 16 bytes */
  :: else -> skip
  fi;
  if
  :: cpl[c] == 0 -> wr(c, t_new + 1, V_HSS)
  :: else -> wr(c, t_new + 1, V_GSS)
  fi;
  wr(c, t_new + 2, rsp[c]);
  wr(c, t_new + 3, V_FLAGS + fl[c]);
  if
  :: cpl[c] == 0 -> wr(c, t_new + 4, V_HCS)
  :: else -> wr(c, t_new + 4, V_GCS)
  fi;
  wr(c, t_new + 5, CODE(retpc));
  if
  :: vec == 14 -> wr(c, t_new + 6, V_INT0); rsp[c] = t_new + 6   /* #PF pushes an error code */
  :: else -> rsp[c] = t_new + 5
  fi;
  CHECK(nf < MAXF);
  f_cpu[nf] = c; f_lo[nf] = t_new + 5; f_kind[nf] = kind; f_guest[nf] = (cpl[c] == 3);
  f_clob[nf] = 0;
  nf++;
  sort_frames();                        /* state.py with_frame: its CPU's newest frame */
  fl[c] = fl[c] & ~F_IF;                /* every gate here is an interrupt gate */
  cpl[c] = 0;
  pc[c] = t_rt;
  runst[c] = RUNNING
}

/* events.py nmi_arrives: delivered now, or latched while NMIs are blocked */
inline nmi_arrives(c) {
  if
  :: nmi_blk[c] -> nmi_pend[c] = 1
  :: else -> nmi_blk[c] = 1; deliver(c, 2, FK_NMI, pc[c])
  fi
}

/* events.py machine_check_arrives / delivery.py: a second #MC while MCIP is set shuts down */
inline mce_arrives(c) {
  if
  :: mcip[c] -> runst[c] = SHUTDOWN
  :: else -> mcip[c] = 1; deliver(c, 18, FK_MCE, pc[c])
  fi
}

/* transition.py _base_actions: which actions a CPU offers */
#define ALIVE       (runst[c] != SHUTDOWN)
#define PENDING_DUE (nmi_pend[c] && !nmi_blk[c])        /* events.py pending_nmi_due */
#define STEP        (runst[c] == RUNNING && !PENDING_DUE)  /* a latched NMI goes first */
#define EVENTS_OK   (ALIVE && !PENDING_DUE)
