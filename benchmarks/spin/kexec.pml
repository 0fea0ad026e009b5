/*
 * kexec.pml -- model/designs/xen_kexec.design (seed 003: Xen's kexec crash path) in Promela,
 * for checking properties/kexec_crash.toml's shootdown questions with SPIN side by side with
 * the checker (benchmarks/compare_spin.py).
 *
 * One process per CPU (proctype cpu). Each alternative of its loop is one design step (one
 * instruction, or one pseudo-C statement; an `atomic { }` block is one step) or one event
 * the checker's environment may raise at that boundary (transition.py _base_actions): a
 * budgeted NMI, a budgeted #MC, an in-flight NMI IPI arriving, a latched NMI being taken.
 * Every alternative is a d_step: one Promela transition per checker action. The design's
 * `wait_timeout` gives up through Promela's own `timeout` (the design's definition of it,
 * xen_kexec.design:15-17).
 *
 * Parameters (spin -D...):
 *   NCPU (default 3)                          environment.cpus
 *   PATCH_V1 | PATCH_V1_FIXED (default)       variant patch = "patch-v1" / "patch-v1-fixed"
 *   CRASH_FROM_PANIC | CRASH_FROM_WATCHDOG    variant crash_from (default: any, both
 *                                             initial states, as the design's two `cpu 0`
 *                                             lines at xen_kexec.design:108-113)
 *   NMI_CPU0, NMI_CPU1, NMI_OTHERS            environment.nmi = [NMI_CPU0, NMI_CPU1, NMI_OTHERS...]
 *   MCE_CPU0, MCE_CPU1, MCE_OTHERS            environment.mce likewise (default all 0)
 * The other patch variants (callback, ist-left-on, cpumask) are not translated.
 *
 * Claims: never_timed_out ([] !timed_out: kexec_crash.toml's `kind = "never", expr =
 * "timed_out"`). Select one with pan -N never_timed_out.
 *
 * State: see x86.pml. The design's variables that never change in these variants
 * (nmi_callback, waiting_to_crash) and the registers the code never writes are left out;
 * the df_ist stack is left out (no gate uses IST 1, xen_kexec.design:88-91), so NSTK = 3.
 * The Promela state count is the checker's plus one: the state before `init` has picked
 * the initial states.
 */

#ifndef NCPU
#define NCPU 3
#endif
#if !defined(PATCH_V1) && !defined(PATCH_V1_FIXED)
#define PATCH_V1_FIXED
#endif
#ifndef NMI_CPU0
#define NMI_CPU0 0
#endif
#ifndef NMI_CPU1
#define NMI_CPU1 1
#endif
#ifndef NMI_OTHERS
#define NMI_OTHERS 0
#endif
#ifndef MCE_CPU0
#define MCE_CPU0 0
#endif
#ifndef MCE_CPU1
#define MCE_CPU1 0
#endif
#ifndef MCE_OTHERS
#define MCE_OTHERS 0
#endif

#define NSTK  3
#define DEPTH 18
#define MAXF  (NCPU + 2)

#define ST_PRIMARY 0     /* stack primary size 0x2000 per-cpu   (xen_kexec.design:74) */
#define ST_NMI     1     /* stack nmi_ist size 0x1000 per-cpu   (:76), TSS ist 2 (:82) */
#define ST_MCE     2     /* stack mce_ist size 0x1000 per-cpu   (:77), TSS ist 3 (:83) */
#define RSP0_STACK ST_PRIMARY                                /* rsp0 primary (:80) */

#include "x86.pml"


/* -- the design's steps (pc values), with their design lines ------------------------- */
/* xen_panic :127-129 */
#define XP_CALL    0    /* :128 kexec_crash(); */
#define XP_RET     1    /* :129 } */
/* xen_stuck :133-140 */
#define XS_ATOMIC  2    /* :134-137 atomic { watchdog_stuck = 1; send_nmi(cpu); } */
#define XS_LOOP    3    /* :138-139 for (;;) { } (the jump back to itself) */
#define XS_RET     4    /* :140 } */
/* xen_idle :142-144 */
#define XI_HLT     5    /* :143 hlt */
#define XI_JMP     6    /* :144 jmp 1b */
/* entry_NMI :148-151 */
#define EN_PUSH    7    /* :149 pushq $0 */
#define EN_MOVL    8    /* :150 movl $TRAP_nmi,4(%rsp) */
#define EN_JMP     9    /* :151 jmp handle_ist_exception */
/* entry_MC :153-156 */
#define EM_PUSH    10   /* :154 */
#define EM_MOVL    11   /* :155 */
#define EM_JMP     12   /* :156 */
/* handle_ist_exception :159-167 */
#define HI_SAVE    13   /* :160 SAVE_ALL = :117 pushq %rax */
#define HI_MOVL    14   /* :161 movl UREGS_entry_vector(%rsp),%eax */
#define HI_CMP     15   /* :162 cmpl $TRAP_nmi,%eax */
#define HI_JNE     16   /* :163 jne 1f */
#define HI_CALLN   17   /* :164 callq do_nmi */
#define HI_JMPN    18   /* :165 jmp restore_all_xen */
#define HI_CALLM   19   /* :166 callq do_machine_check */
#define HI_JMPM    20   /* :167 jmp restore_all_xen */
/* restore_all_xen :169-172 */
#define RX_POP     21   /* :170 RESTORE_ALL = :121 popq %rax */
#define RX_ADD     22   /* :171 addq $8,%rsp */
#define RX_IRET    23   /* :172 iretq */
/* nmi_crash :176-183 */
#define NC_CLI     24   /* :177 cli */
#define NC_PUSH    25   /* :178 pushq $0 */
#define NC_MOVL    26   /* :179 movl $TRAP_nmi,4(%rsp) */
#define NC_SAVE    27   /* :180 SAVE_ALL = :117 pushq %rax */
#define NC_MOVQ    28   /* :181 movq %rsp,%rdi */
#define NC_CALL    29   /* :182 callq do_nmi_crash */
#define NC_UD2     30   /* :183 ud2 */
/* trap_nop :186-187 */
#define TN_IRET    31   /* :187 iretq */
/* enable_nmis :190-205 */
#define EA_PUSH    32   /* :191 push %rax */
#define EA_MOV     33   /* :192 movq %rsp, %rax */
#define EA_SS      34   /* :195 pushq $0 */
#define EA_RSP     35   /* :196 pushq %rax */
#define EA_FL      36   /* :197 pushfq */
#define EA_CS      37   /* :198 pushq $__HYPERVISOR_CS */
#define EA_LEA     38   /* :199 leaq 1f(%rip),%rax */
#define EA_RIP     39   /* :200 pushq %rax */
#define EA_IRET    40   /* :202 iretq */
#define EA_POP     41   /* :204 popq %rax */
#define EA_RET     42   /* :205 retq */
/* do_nmi :211-222 (patch != callback) */
#define DN_IF      43   /* :218 if (watchdog_stuck) { */
#define DN_CLR     44   /* :219 watchdog_stuck = 0; */
#define DN_CALL    45   /* :220 kexec_crash(); */
#define DN_RET     46   /* :222 } */
/* do_machine_check :225-227 */
#define DM_CLR     47   /* :226 clear_mcip(); */
#define DM_RET     48   /* :227 } */
/* do_nmi_crash :247-265 */
#define DC_ASSERT  49   /* :248 assert(crashing_cpu != cpu); */
#define DC_IF      50   /* :249 if (!crash_save_done) { */
#define DC_NOTES   51   /* :253 crash_notes_saved = 1; */
#define DC_DONE    52   /* :254 crash_save_done = 1; */
#define DC_DEC     53   /* :256 atomic_dec(waiting_for_crash_ipi); (patch-v1-fixed only) */
#define DC_SELF    54   /* :261 send_nmi(cpu); */
#define DC_HALT    55   /* :263 halt(); */
#define DC_JMP     56   /* :264 } (for (;;) jumps back) */
#define DC_RET     57   /* :265 } */
/* nmi_shootdown_cpus :268-318 (patch-v1 / patch-v1-fixed branch) */
#define NS_CLI     58   /* :269 cli(); */
#define NS_CRASHING 59  /* :270 crashing_cpu = cpu; */
#define NS_SET     60   /* :274 atomic_set(waiting_for_crash_ipi, ncpus - 1); */
#define NS_I0      61   /* :290 for (i = 0; */
#define NS_FOR     62   /* :290 i < ncpus; */
#define NS_IST_NMI 63   /* :292 set_gate_ist(idt_table[i], TRAP_nmi, IST_NONE); */
#define NS_IST_MC  64   /* :293 set_gate_ist(idt_table[i], TRAP_machine_check, IST_NONE); */
#define NS_IFSELF  65   /* :295 if (i == cpu) { */
#define NS_NOP     66   /* :300 set_gate(idt_table[i], TRAP_nmi, trap_nop); */
#define NS_ELSE    67   /* :302 } else { (jump over the else) */
#define NS_CRASH   68   /* :306 set_gate(idt_table[i], TRAP_nmi, nmi_crash); */
#define NS_INC     69   /* :309 } (the for loop's i++, stepped at its closing brace) */
#define NS_LOOP    70   /* :309 } (jump back to the test) */
#define NS_SEND    71   /* :311 send_nmi(ALL_BUT_SELF); */
#define NS_WAIT    72   /* :316 wait_timeout(!(waiting_for_crash_ipi > 0)); */
#define NS_RET     73   /* :318 } */
/* machine_kexec :322-341 (patch-v1 / patch-v1-fixed branch) */
#define MK_CLI     74   /* :323 cli(); */
#define MK_GATE    75   /* :326 set_gate(idt_table, TRAP_machine_check, trap_nop); */
#define MK_CALLE   76   /* :327 enable_nmis(); */
#define MK_CALLK   77   /* :340 crash_kernel(); */
#define MK_RET     78   /* :341 } */
/* kexec_crash :347-351 */
#define KC_NOTES   79   /* :348 crash_notes_saved = 1; */
#define KC_CALLS   80   /* :349 nmi_shootdown_cpus(); */
#define KC_CALLM   81   /* :350 machine_kexec(); */
#define KC_RET     82   /* :351 } */
/* crash_kernel :358-367 */
#define CK_ATOMIC  83   /* :359-363 atomic { kexec_started = 1; kexec_nmis_blocked = nmi_blocked(); assert(...); } */
#define CK_HALT    84   /* :365 halt(); */
#define CK_JMP     85   /* :366 } (for (;;) jumps back) */
#define CK_RET     86   /* :367 } */

/* -- the design's tables and variables --------------------------------------------- */
/* idt idt_table per-cpu (:88-91): the NMI and #MC gates, each a handler and an IST index */
byte nmi_gate[NCPU], nmi_gist[NCPU];
byte mc_gate[NCPU], mc_gist[NCPU];

/* registers the code writes (the others stay 0) */
byte rax[NCPU], rdi[NCPU];

/* crash.c / traps.c / kexec globals (:94-105) */
short waiting_for_crash_ipi;
byte  crashing_cpu;
byte  i;
bit   crash_save_done[NCPU];
bit   crash_notes_saved[NCPU];
bit   watchdog_stuck[NCPU];
bit   kexec_started;
bit   kexec_nmis_blocked;

/* sticky incidents (Machine.incidents) */
bit timed_out;          /* "timeout-fired" (interp.py timeout) */
bit assert_failed_239;  /* "assertion-failed at line 239" */
bit assert_failed_347;  /* "assertion-failed at line 347" */

/* environment budgets (SysState.budgets) */
byte nmi_b[NCPU], mce_b[NCPU];

ltl never_timed_out { [] !timed_out }

inline gate(c, vec) {
  if
  :: vec == 2  -> t_rt = nmi_gate[c]; t_ist = nmi_gist[c]
  :: vec == 18 -> t_rt = mc_gate[c];  t_ist = mc_gist[c]
  :: else      -> t_rt = NOGATE; t_ist = 0
  fi
}

inline ist_stack(n) {
  if
  :: n == 2 -> t_s = ST_NMI
  :: n == 3 -> t_s = ST_MCE
  :: else -> CHECK(0)
  fi
}

/* An exception here finds no gate: #GP, #DF and shutdown follow (xen_kexec.design:86-87). */
inline fault_shutdown(c) {
  runst[c] = SHUTDOWN
}

proctype cpu(byte c) {
end:
  do
  /* ---- environment events at this boundary (transition.py _base_actions) ---- */
  :: d_step { ALIVE && mce_b[c] > 0 -> mce_b[c]--; mce_arrives(c); CLEAN }
  :: d_step { ALIVE && PENDING_DUE -> nmi_pend[c] = 0; nmi_blk[c] = 1; deliver(c, 2, FK_NMI, pc[c]); CLEAN }
  :: d_step { EVENTS_OK && nmi_b[c] > 0 && !(nmi_blk[c] && nmi_pend[c]) -> nmi_b[c]--; nmi_arrives(c); CLEAN }
  :: d_step { EVENTS_OK && ipi[c] -> ipi[c] = 0; nmi_arrives(c); CLEAN }
  /* the wait gives up only when nothing else in the system can move (xen_kexec.design:15) */
  :: d_step { timeout && runst[c] == RUNNING && pc[c] == NS_WAIT -> timed_out = 1; pc[c] = NS_RET; CLEAN }

  /* ---- xen_panic (:127-129) ---- */
  :: d_step { STEP && pc[c] == XP_CALL -> call(c, KC_NOTES, XP_RET); CLEAN }
  :: d_step { STEP && pc[c] == XP_RET -> ret(c); CLEAN }
  /* ---- xen_stuck (:133-140) ---- */
  :: d_step { STEP && pc[c] == XS_ATOMIC -> watchdog_stuck[c] = 1; ipi[c] = 1; pc[c] = XS_LOOP; CLEAN }
  :: d_step { STEP && pc[c] == XS_LOOP -> pc[c] = XS_LOOP; CLEAN }
  :: d_step { STEP && pc[c] == XS_RET -> ret(c); CLEAN }
  /* ---- xen_idle (:142-144) ---- */
  :: d_step { STEP && pc[c] == XI_HLT -> pc[c] = XI_JMP; runst[c] = HALTED; CLEAN }
  :: d_step { STEP && pc[c] == XI_JMP -> pc[c] = XI_HLT; CLEAN }
  /* ---- entry_NMI / entry_MC (:148-156) ---- */
  :: d_step { STEP && pc[c] == EN_PUSH -> push(c, V_INT0); pc[c] = EN_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == EN_MOVL -> movl_hi(c, V_HI2); pc[c] = EN_JMP; CLEAN }
  :: d_step { STEP && pc[c] == EN_JMP -> pc[c] = HI_SAVE; CLEAN }
  :: d_step { STEP && pc[c] == EM_PUSH -> push(c, V_INT0); pc[c] = EM_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == EM_MOVL -> movl_hi(c, V_HI18); pc[c] = EM_JMP; CLEAN }
  :: d_step { STEP && pc[c] == EM_JMP -> pc[c] = HI_SAVE; CLEAN }
  /* ---- handle_ist_exception (:159-167) ---- */
  :: d_step { STEP && pc[c] == HI_SAVE -> push(c, rax[c]); pc[c] = HI_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVL ->           /* the upper half of the word at 8(%rsp) */
       rd(c, rsp[c] - 1);
       if
       :: t_v == V_HI2 -> rax[c] = V_INT2
       :: t_v == V_HI18 -> rax[c] = V_INT18
       :: else -> CHECK(0)
       fi;
       pc[c] = HI_CMP; CLEAN }
  :: d_step { STEP && pc[c] == HI_CMP ->            /* 2 - 2 sets ZF; 18 - 2 sets nothing */
       CHECK(rax[c] == V_INT2 || rax[c] == V_INT18);
       if
       :: rax[c] == V_INT2 -> fl[c] = (fl[c] & F_IF) | F_ZF
       :: else -> fl[c] = fl[c] & F_IF
       fi;
       pc[c] = HI_JNE; CLEAN }
  :: d_step { STEP && pc[c] == HI_JNE ->
       if
       :: fl[c] & F_ZF -> pc[c] = HI_CALLN
       :: else -> pc[c] = HI_CALLM
       fi; CLEAN }
  :: d_step { STEP && pc[c] == HI_CALLN -> call(c, DN_IF, HI_JMPN); CLEAN }
  :: d_step { STEP && pc[c] == HI_JMPN -> pc[c] = RX_POP; CLEAN }
  :: d_step { STEP && pc[c] == HI_CALLM -> call(c, DM_CLR, HI_JMPM); CLEAN }
  :: d_step { STEP && pc[c] == HI_JMPM -> pc[c] = RX_POP; CLEAN }
  /* ---- restore_all_xen (:169-172) ---- */
  :: d_step { STEP && pc[c] == RX_POP -> pop(c); rax[c] = t_v; pc[c] = RX_ADD; CLEAN }
  :: d_step { STEP && pc[c] == RX_ADD ->            /* an upper-half address: SF set */
       move_rsp(c, rsp[c] - 1); fl[c] = (fl[c] & F_IF) | F_SF; pc[c] = RX_IRET; CLEAN }
  :: d_step { STEP && pc[c] == RX_IRET -> iret(c); CLEAN }
  /* ---- nmi_crash (:176-183) ---- */
  :: d_step { STEP && pc[c] == NC_CLI -> fl[c] = fl[c] & ~F_IF; pc[c] = NC_PUSH; CLEAN }
  :: d_step { STEP && pc[c] == NC_PUSH -> push(c, V_INT0); pc[c] = NC_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == NC_MOVL -> movl_hi(c, V_HI2); pc[c] = NC_SAVE; CLEAN }
  :: d_step { STEP && pc[c] == NC_SAVE -> push(c, rax[c]); pc[c] = NC_MOVQ; CLEAN }
  :: d_step { STEP && pc[c] == NC_MOVQ -> rdi[c] = rsp[c]; pc[c] = NC_CALL; CLEAN }
  :: d_step { STEP && pc[c] == NC_CALL -> call(c, DC_ASSERT, NC_UD2); CLEAN }
  :: d_step { STEP && pc[c] == NC_UD2 -> fault_shutdown(c); CLEAN }
  /* ---- trap_nop (:186-187) ---- */
  :: d_step { STEP && pc[c] == TN_IRET -> iret(c); CLEAN }
  /* ---- enable_nmis (:190-205): an IRET frame built by hand ---- */
  :: d_step { STEP && pc[c] == EA_PUSH -> push(c, rax[c]); pc[c] = EA_MOV; CLEAN }
  :: d_step { STEP && pc[c] == EA_MOV -> rax[c] = rsp[c]; pc[c] = EA_SS; CLEAN }
  :: d_step { STEP && pc[c] == EA_SS -> push(c, V_INT0); pc[c] = EA_RSP; CLEAN }
  :: d_step { STEP && pc[c] == EA_RSP -> push(c, rax[c]); pc[c] = EA_FL; CLEAN }
  :: d_step { STEP && pc[c] == EA_FL -> push(c, V_FLAGS + fl[c]); pc[c] = EA_CS; CLEAN }
  :: d_step { STEP && pc[c] == EA_CS -> push(c, V_HCS); pc[c] = EA_LEA; CLEAN }
  :: d_step { STEP && pc[c] == EA_LEA -> rax[c] = CODE(EA_POP); pc[c] = EA_RIP; CLEAN }
  :: d_step { STEP && pc[c] == EA_RIP -> push(c, rax[c]); pc[c] = EA_IRET; CLEAN }
  :: d_step { STEP && pc[c] == EA_IRET -> iret(c); CLEAN }
  :: d_step { STEP && pc[c] == EA_POP -> pop(c); rax[c] = t_v; pc[c] = EA_RET; CLEAN }
  :: d_step { STEP && pc[c] == EA_RET -> ret(c); CLEAN }
  /* ---- do_nmi (:211-222) ---- */
  :: d_step { STEP && pc[c] == DN_IF ->
       if
       :: watchdog_stuck[c] -> pc[c] = DN_CLR
       :: else -> pc[c] = DN_RET
       fi; CLEAN }
  :: d_step { STEP && pc[c] == DN_CLR -> watchdog_stuck[c] = 0; pc[c] = DN_CALL; CLEAN }
  :: d_step { STEP && pc[c] == DN_CALL -> call(c, KC_NOTES, DN_RET); CLEAN }
  :: d_step { STEP && pc[c] == DN_RET -> ret(c); CLEAN }
  /* ---- do_machine_check (:225-227) ---- */
  :: d_step { STEP && pc[c] == DM_CLR -> mcip[c] = 0; pc[c] = DM_RET; CLEAN }
  :: d_step { STEP && pc[c] == DM_RET -> ret(c); CLEAN }
  /* ---- do_nmi_crash (:247-265) ---- */
  :: d_step { STEP && pc[c] == DC_ASSERT ->
       if
       :: crashing_cpu == c -> assert_failed_239 = 1
       :: else -> skip
       fi;
       pc[c] = DC_IF; CLEAN }
  :: d_step { STEP && pc[c] == DC_IF ->
       if
       :: !crash_save_done[c] -> pc[c] = DC_NOTES
       :: else -> pc[c] = DC_SELF
       fi; CLEAN }
  :: d_step { STEP && pc[c] == DC_NOTES -> crash_notes_saved[c] = 1; pc[c] = DC_DONE; CLEAN }
#ifdef PATCH_V1_FIXED
  :: d_step { STEP && pc[c] == DC_DONE -> crash_save_done[c] = 1; pc[c] = DC_DEC; CLEAN }
  :: d_step { STEP && pc[c] == DC_DEC -> waiting_for_crash_ipi--; pc[c] = DC_SELF; CLEAN }
#else
  /* the RFC patch as posted: no decrement (:255 .if patch == patch-v1-fixed | ...) */
  :: d_step { STEP && pc[c] == DC_DONE -> crash_save_done[c] = 1; pc[c] = DC_SELF; CLEAN }
#endif
  :: d_step { STEP && pc[c] == DC_SELF -> ipi[c] = 1; pc[c] = DC_HALT; CLEAN }
  :: d_step { STEP && pc[c] == DC_HALT -> pc[c] = DC_JMP; runst[c] = HALTED; CLEAN }
  :: d_step { STEP && pc[c] == DC_JMP -> pc[c] = DC_HALT; CLEAN }
  :: d_step { STEP && pc[c] == DC_RET -> ret(c); CLEAN }
  /* ---- nmi_shootdown_cpus (:268-318) ---- */
  :: d_step { STEP && pc[c] == NS_CLI -> fl[c] = fl[c] & ~F_IF; pc[c] = NS_CRASHING; CLEAN }
  :: d_step { STEP && pc[c] == NS_CRASHING -> crashing_cpu = c; pc[c] = NS_SET; CLEAN }
  :: d_step { STEP && pc[c] == NS_SET -> waiting_for_crash_ipi = NCPU - 1; pc[c] = NS_I0; CLEAN }
  :: d_step { STEP && pc[c] == NS_I0 -> i = 0; pc[c] = NS_FOR; CLEAN }
  :: d_step { STEP && pc[c] == NS_FOR ->
       if
       :: i < NCPU -> pc[c] = NS_IST_NMI
       :: else -> pc[c] = NS_SEND
       fi; CLEAN }
  :: d_step { STEP && pc[c] == NS_IST_NMI -> nmi_gist[i] = 0; pc[c] = NS_IST_MC; CLEAN }
  :: d_step { STEP && pc[c] == NS_IST_MC -> mc_gist[i] = 0; pc[c] = NS_IFSELF; CLEAN }
  :: d_step { STEP && pc[c] == NS_IFSELF ->
       if
       :: i == c -> pc[c] = NS_NOP
       :: else -> pc[c] = NS_CRASH
       fi; CLEAN }
  :: d_step { STEP && pc[c] == NS_NOP -> nmi_gate[i] = TN_IRET; nmi_gist[i] = 0; pc[c] = NS_ELSE; CLEAN }
  :: d_step { STEP && pc[c] == NS_ELSE -> pc[c] = NS_INC; CLEAN }
  :: d_step { STEP && pc[c] == NS_CRASH -> nmi_gate[i] = NC_CLI; nmi_gist[i] = 0; pc[c] = NS_INC; CLEAN }
  :: d_step { STEP && pc[c] == NS_INC -> i++; pc[c] = NS_LOOP; CLEAN }
  :: d_step { STEP && pc[c] == NS_LOOP -> pc[c] = NS_FOR; CLEAN }
  :: d_step { STEP && pc[c] == NS_SEND ->
       t_n = 0;
       do
       :: t_n < NCPU -> if :: t_n != c -> ipi[t_n] = 1 :: else -> skip fi; t_n++
       :: else -> break
       od;
       pc[c] = NS_WAIT; CLEAN }
  :: d_step { STEP && pc[c] == NS_WAIT && !(waiting_for_crash_ipi > 0) -> pc[c] = NS_RET; CLEAN }
  :: d_step { STEP && pc[c] == NS_RET -> ret(c); CLEAN }
  /* ---- machine_kexec (:322-341) ---- */
  :: d_step { STEP && pc[c] == MK_CLI -> fl[c] = fl[c] & ~F_IF; pc[c] = MK_GATE; CLEAN }
  :: d_step { STEP && pc[c] == MK_GATE -> mc_gate[c] = TN_IRET; mc_gist[c] = 0; pc[c] = MK_CALLE; CLEAN }
  :: d_step { STEP && pc[c] == MK_CALLE -> call(c, EA_PUSH, MK_CALLK); CLEAN }
  :: d_step { STEP && pc[c] == MK_CALLK -> call(c, CK_ATOMIC, MK_RET); CLEAN }
  :: d_step { STEP && pc[c] == MK_RET -> ret(c); CLEAN }
  /* ---- kexec_crash (:347-351) ---- */
  :: d_step { STEP && pc[c] == KC_NOTES -> crash_notes_saved[c] = 1; pc[c] = KC_CALLS; CLEAN }
  :: d_step { STEP && pc[c] == KC_CALLS -> call(c, NS_CLI, KC_CALLM); CLEAN }
  :: d_step { STEP && pc[c] == KC_CALLM -> call(c, MK_CLI, KC_RET); CLEAN }
  :: d_step { STEP && pc[c] == KC_RET -> ret(c); CLEAN }
  /* ---- crash_kernel (:358-367) ---- */
  :: d_step { STEP && pc[c] == CK_ATOMIC ->
       kexec_started = 1;
       kexec_nmis_blocked = nmi_blk[c];
       if
       :: kexec_nmis_blocked -> assert_failed_347 = 1
       :: else -> skip
       fi;
       pc[c] = CK_HALT; CLEAN }
  :: d_step { STEP && pc[c] == CK_HALT -> pc[c] = CK_JMP; runst[c] = HALTED; CLEAN }
  :: d_step { STEP && pc[c] == CK_JMP -> pc[c] = CK_HALT; CLEAN }
  :: d_step { STEP && pc[c] == CK_RET -> ret(c); CLEAN }
  od
}

byte t_c;   /* init's loop counter, back to 0 when init ends */

init {
  atomic {
    /* every CPU: idt_table, tss, rsp top(primary), idle and halted with IF=1 (:114) */
    t_c = 0;
    do
    :: t_c < NCPU ->
       pc[t_c] = XI_HLT; runst[t_c] = HALTED; fl[t_c] = F_IF; rsp[t_c] = ADDR(ST_PRIMARY, 0);
       rax[t_c] = V_INT0; rdi[t_c] = V_INT0;
       nmi_gate[t_c] = EN_PUSH; nmi_gist[t_c] = 2;    /* gate NMI entry_NMI interrupt ist 2 (:89) */
       mc_gate[t_c] = EM_PUSH; mc_gist[t_c] = 3;      /* gate #MC entry_MC interrupt ist 3 (:90) */
       if
       :: t_c == 0 -> nmi_b[t_c] = NMI_CPU0; mce_b[t_c] = MCE_CPU0
       :: t_c == 1 -> nmi_b[t_c] = NMI_CPU1; mce_b[t_c] = MCE_CPU1
       :: else -> nmi_b[t_c] = NMI_OTHERS; mce_b[t_c] = MCE_OTHERS
       fi;
       t_c++
    :: else -> break
    od;
    /* CPU 0 crashes: the design's alternative `cpu 0` lines (:108-113) */
#if defined(CRASH_FROM_PANIC)
    pc[0] = XP_CALL; runst[0] = RUNNING
#elif defined(CRASH_FROM_WATCHDOG)
    pc[0] = XS_ATOMIC; runst[0] = RUNNING; fl[0] = 0
#else
    if
    :: pc[0] = XP_CALL; runst[0] = RUNNING                 /* xen_panic, if 1 (:109) */
    :: pc[0] = XS_ATOMIC; runst[0] = RUNNING; fl[0] = 0    /* xen_stuck, if 0 (:112) */
    fi
#endif
    ;
    t_c = 0;
    do
    :: t_c < NCPU -> run cpu(t_c); t_c++
    :: else -> break
    od;
    t_c = 0
  }
}
