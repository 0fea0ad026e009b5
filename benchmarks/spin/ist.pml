/*
 * ist.pml -- model/designs/xen_ist.design (seed 001: reentrant NMIs and MCEs on Xen's IST
 * stacks) in Promela, for checking properties/ist_reentrancy.toml with SPIN side by side
 * with the checker (benchmarks/compare_spin.py).
 *
 * One CPU (xen_ist.design:30), one process. Each alternative of its loop is one design step
 * (one instruction) or one event the checker's environment may raise at that boundary
 * (model/system/transition.py _base_actions): a budgeted NMI, a budgeted #MC, a budgeted
 * external interrupt with vector EXT_VECTOR, a step marked @fault(#X) faulting within the
 * `faults` budget, a latched NMI being taken. Every alternative is a d_step: one Promela
 * transition per checker action.
 *
 * Parameters (spin -D...):
 *   IST_XEN (default) | IST_SHARED | IST_NONE     variant ist = "xen" / "shared" / "none"
 *   CONTEXT_BOTH (default) | CONTEXT_XEN | CONTEXT_GUEST   variant context
 *   NMI, MCE, EXTERNAL, FAULTS (default 0)        environment budgets
 *   EXT_VECTOR (2 or 18), PIC                     environment.external_vectors = [v], pic
 *
 * Claims: never_frame_clobbered ([] !frame_clobbered, the `kind = "never", expr =
 * "frame_clobbered"` of every question in ist_reentrancy.toml).
 *
 * State: see x86.pml. The df_ist and guest_stack stacks are never written (no #DF is raised,
 * guest code pushes nothing), so only primary, nmi_ist and mce_ist have words (NSTK = 3).
 * The Promela state count is the checker's plus one: the state before `init` has picked
 * the initial state(s).
 */

#if !defined(IST_XEN) && !defined(IST_SHARED) && !defined(IST_NONE)
#define IST_XEN
#endif
#if !defined(CONTEXT_BOTH) && !defined(CONTEXT_XEN) && !defined(CONTEXT_GUEST)
#define CONTEXT_BOTH
#endif
#ifndef NMI
#define NMI 0
#endif
#ifndef MCE
#define MCE 0
#endif
#ifndef EXTERNAL
#define EXTERNAL 0
#endif
#ifndef EXT_VECTOR
#define EXT_VECTOR 2
#endif
#ifndef FAULTS
#define FAULTS 0
#endif

#define NCPU  1
#define NSTK  3
#define DEPTH 23
#define MAXF  4

#define ST_PRIMARY 0    /* stack primary size 0x2000 per-cpu (xen_ist.design:33), rsp0 (:40) */
#define ST_NMI     1    /* stack nmi_ist (:34) */
#define ST_MCE     2    /* stack mce_ist (:35) */
#define ST_DF      3    /* stack df_ist (:36): no words modelled */
#define ST_GUEST   4    /* stack guest_stack owner guest (:37): no words modelled */
#define RSP0_STACK ST_PRIMARY

#include "x86.pml"

/* -- the design's steps (pc values), with their design lines ------------------------- */
/* xen_idle :88-90 */
#define XI_NOP     0    /* :89 nop */
#define XI_JMP     1    /* :90 jmp 1b */
/* guest_kernel :93-95 (CPL 3) */
#define GK_NOP     2    /* :94 nop */
#define GK_JMP     3    /* :95 jmp 1b */
/* entry_NMI :97-100 */
#define EN_PUSH    4    /* :98 pushq $0 */
#define EN_MOVL    5    /* :99 movl $X86_EXC_NMI, 4(%rsp) */
#define EN_JMP     6    /* :100 jmp handle_ist_exception */
/* entry_MC :102-105 */
#define EM_PUSH    7    /* :103 */
#define EM_MOVL    8    /* :104 */
#define EM_JMP     9    /* :105 */
/* handle_ist_exception :107-130 */
#define HI_PUSHDI  10   /* :108 SAVE_ALL = :75 pushq %rdi */
#define HI_PUSHSI  11   /*                 :76 pushq %rsi */
#define HI_PUSHAX  12   /*                 :77 pushq %rax */
#define HI_PUSHCX  13   /*                 :78 pushq %rcx */
#define HI_TEST    14   /* :109 testb $3, UREGS_cs(%rsp) */
#define HI_JZ      15   /* :110 jz 1f */
#define HI_MOVABS  16   /* :112 movabsq $top(primary)-UREGS_kernel_sizeof, %rdi */
#define HI_MOVSI   17   /* :113 movq %rsp, %rsi */
#define HI_MOVCX   18   /* :114 movl $UREGS_kernel_sizeof/8, %ecx */
#define HI_MOVSP   19   /* :115 movq %rdi, %rsp */
#define HI_REP     20   /* :116 rep movsq */
#define HI_MOVDI   21   /* :117 1: movq %rsp, %rdi */
#define HI_MOVL    22   /* :118 movl UREGS_entry_vector(%rsp), %eax */
#define HI_CMPN    23   /* :119 cmpl $X86_EXC_NMI, %eax */
#define HI_JNE2    24   /* :120 jne 2f */
#define HI_CALLN   25   /* :121 callq do_nmi */
#define HI_JMP3A   26   /* :122 jmp 3f */
#define HI_CMPM    27   /* :123 2: cmpl $X86_EXC_MC, %eax */
#define HI_JNE4    28   /* :124 jne 4f */
#define HI_CALLM   29   /* :125 callq do_machine_check */
#define HI_JMP3B   30   /* :126 jmp 3f */
#define HI_UD2     31   /* :127 4: ud2 */
#define HI_TEST3   32   /* :128 3: testb $3, UREGS_cs(%rsp) */
#define HI_JZX     33   /* :129 jz restore_all_xen */
#define HI_JMPG    34   /* :130 jmp restore_all_guest */
/* restore_all_xen :132-135 */
#define RX_POPCX   35   /* :133 RESTORE_ALL = :82 popq %rcx */
#define RX_POPAX   36   /*                    :83 popq %rax */
#define RX_POPSI   37   /*                    :84 popq %rsi */
#define RX_POPDI   38   /*                    :85 popq %rdi */
#define RX_ADD     39   /* :134 addq $8, %rsp */
#define RX_IRET    40   /* :135 iretq */
/* restore_all_guest :137-140 */
#define RG_POPCX   41   /* :138 RESTORE_ALL = :82-85 */
#define RG_POPAX   42
#define RG_POPSI   43
#define RG_POPDI   44
#define RG_ADD     45   /* :139 addq $8, %rsp */
#define RG_IRET    46   /* :140 iretq */
/* entry_BP :143-146 */
#define BP_PUSH    47   /* :144 pushq $0 */
#define BP_MOVL    48   /* :145 movl $X86_EXC_BP, 4(%rsp) */
#define BP_JMP     49   /* :146 jmp handle_exception */
/* entry_PF :148-150 */
#define PF_MOVL    50   /* :149 movl $X86_EXC_PF, 4(%rsp) */
#define PF_JMP     51   /* :150 jmp handle_exception */
/* entry_GP :152-153 */
#define GP_JMP     52   /* :153 jmp fatal_trap */
/* handle_exception :155-160 */
#define HE_PUSHDI  53   /* :156 SAVE_ALL = :75-78 */
#define HE_PUSHSI  54
#define HE_PUSHAX  55
#define HE_PUSHCX  56
#define HE_CALL    57   /* :157 callq do_trap */
#define HE_TEST    58   /* :158 testb $3, UREGS_cs(%rsp) */
#define HE_JZ      59   /* :159 jz restore_all_xen */
#define HE_JMPG    60   /* :160 jmp restore_all_guest */
/* entry_DF :163-164, fatal_trap :166-169 */
#define DF_JMP     61   /* :164 jmp fatal_trap */
#define FT_CLI     62   /* :167 cli */
#define FT_HLT     63   /* :168 hlt */
#define FT_JMP     64   /* :169 jmp 1b */
/* do_nmi :173-176 */
#define DN_PF      65   /* :174 nop() @fault(#PF) */
#define DN_BP      66   /* :175 nop() @fault(#BP) */
#define DN_RET     67   /* :176 } */
/* do_machine_check :178-180 */
#define DM_CLR     68   /* :179 clear_mcip() */
#define DM_RET     69   /* :180 } */
/* do_trap :182-184 */
#define DT_NOP     70   /* :183 nop() */
#define DT_RET     71   /* :184 } */

/* registers the code writes (the others stay 0) */
byte rax[NCPU], rcx[NCPU], rsi[NCPU], rdi[NCPU];

/* environment budgets (SysState.budgets) */
byte nmi_b[NCPU], mce_b[NCPU], ext_b[NCPU];
byte faults_b;

ltl never_frame_clobbered { [] (nclob == 0) }

/* idt idt_table (:51-63); no code rewrites it */
inline gate(c, vec) {
  if
  :: vec == 3  -> t_rt = BP_PUSH; t_ist = 0       /* gate #BP entry_BP interrupt dpl 3 (:52) */
  :: vec == 14 -> t_rt = PF_MOVL; t_ist = 0       /* gate #PF entry_PF interrupt (:53) */
#ifdef IST_NONE
  :: vec == 2  -> t_rt = EN_PUSH; t_ist = 0       /* gate NMI entry_NMI interrupt (:56) */
  :: vec == 18 -> t_rt = EM_PUSH; t_ist = 0       /* gate #MC entry_MC interrupt (:57) */
#else
  :: vec == 2  -> t_rt = EN_PUSH; t_ist = 2       /* gate NMI entry_NMI interrupt ist 2 (:59) */
  :: vec == 18 -> t_rt = EM_PUSH; t_ist = 1       /* gate #MC entry_MC interrupt ist 1 (:60) */
#endif
  :: else -> t_rt = NOGATE; t_ist = 0             /* #GP/#DF are never raised in these runs */
  fi
}

/* tss tss (:39-49) */
inline ist_stack(n) {
  if
#ifdef IST_SHARED
  :: n == 1 -> t_s = ST_NMI                       /* ist 1 nmi_ist (:45) */
  :: n == 2 -> t_s = ST_NMI                       /* ist 2 nmi_ist (:46) */
#else
  :: n == 1 -> t_s = ST_MCE                       /* ist 1 mce_ist (:42) */
  :: n == 2 -> t_s = ST_NMI                       /* ist 2 nmi_ist (:43) */
#endif
  :: else -> CHECK(0)                             /* ist 4 df_ist: no #DF here */
  fi
}

/* testb $3, UREGS_cs(%rsp): UREGS_cs = 48, the saved CS's RPL decides ZF */
inline test_cs(c) {
  rd(c, rsp[c] - 6);
  CHECK(t_v == V_HCS || t_v == V_GCS);
  if
  :: t_v == V_HCS -> fl[c] = (fl[c] & F_IF) | F_ZF
  :: else -> fl[c] = fl[c] & F_IF
  fi
}

/* rep movsq (memory.py copy_words): RCX words from RSI to RDI; frames inside the source
 * move with it (to the end of the frame list, in order, then sorted by CPU: they become
 * their CPU's newest frames) */
inline rep_movsq(c) {
  CHECK(rcx[c] == V_INT10 && IS_ADDR(rsi[c]) && IS_ADDR(rdi[c]));
  t_src = rsi[c]; t_dst = rdi[c];
  t_k = 0;
  do
  :: t_k < 10 -> rd(c, t_src - t_k); t_w[t_k] = t_v; t_k++
  :: else -> break
  od;
  t_k = 0;
  do
  :: t_k < 10 -> wr(c, t_dst - t_k, t_w[t_k]); t_k++
  :: else -> break
  od;
  /* frames with src <= lo and lo + 40 <= src + 80 move; kept ones stay first */
  t_n = nf;
  t_k = 0;
  do
  :: t_k < t_n ->
     if
     :: STK(f_lo[t_k]) == STK(t_src) && KOF(f_lo[t_k]) <= KOF(t_src) && KOF(f_lo[t_k]) + 5 >= KOF(t_src) ->
        CHECK(nf < MAXF);
        f_cpu[nf] = f_cpu[t_k];
        f_lo[nf] = ADDR(STK(t_dst), KOF(t_dst) - (KOF(t_src) - KOF(f_lo[t_k])));
        f_kind[nf] = f_kind[t_k]; f_guest[nf] = f_guest[t_k]; f_clob[nf] = f_clob[t_k];
        if
        :: f_clob[t_k] -> nclob++            /* drop_frame below takes one back off */
        :: else -> skip
        fi;
        nf++;
        drop_frame(t_k);
        t_n--
     :: else -> t_k++
     fi
  :: else -> break
  od;
  sort_frames();
  rcx[c] = V_INT0;
  rsi[c] = t_src - 10;
  rdi[c] = t_dst - 10
}

proctype cpu(byte c) {
end:
  do
  /* ---- environment events at this boundary (transition.py _base_actions) ---- */
  :: d_step { ALIVE && mce_b[c] > 0 -> mce_b[c]--; mce_arrives(c); CLEAN }
  :: d_step { ALIVE && PENDING_DUE -> nmi_pend[c] = 0; nmi_blk[c] = 1; deliver(c, 2, FK_NMI, pc[c]); CLEAN }
  :: d_step { EVENTS_OK && nmi_b[c] > 0 && !(nmi_blk[c] && nmi_pend[c]) -> nmi_b[c]--; nmi_arrives(c); CLEAN }
#if EXT_VECTOR == 18 || defined(PIC)
  /* an external interrupt needs IF=1 (events.py can_take_external); the LAPIC refuses
   * vectors below 16 unless it comes from a PIC (events.py external_arrives) */
  :: d_step { EVENTS_OK && ext_b[c] > 0 && (fl[c] & F_IF) ->
       ext_b[c]--;
       if
       :: EXT_VECTOR == 2 -> deliver(c, 2, FK_EXT2, pc[c])      /* a fake NMI: no latch */
       :: else -> deliver(c, 18, FK_EXT18, pc[c])              /* a fake #MC: no MCIP */
       fi;
       CLEAN }
#endif
  /* @fault(#PF) (:174): a fault saves the faulting step's own address */
  :: d_step { STEP && pc[c] == DN_PF && faults_b > 0 -> faults_b--; deliver(c, 14, FK_PF, DN_PF); CLEAN }
  /* @fault(#BP) (:175): a trap saves the next step's address */
  :: d_step { STEP && pc[c] == DN_BP && faults_b > 0 -> faults_b--; deliver(c, 3, FK_BP, DN_RET); CLEAN }

  /* ---- xen_idle / guest_kernel (:88-95) ---- */
  :: d_step { STEP && pc[c] == XI_NOP -> pc[c] = XI_JMP; CLEAN }
  :: d_step { STEP && pc[c] == XI_JMP -> pc[c] = XI_NOP; CLEAN }
  :: d_step { STEP && pc[c] == GK_NOP -> pc[c] = GK_JMP; CLEAN }
  :: d_step { STEP && pc[c] == GK_JMP -> pc[c] = GK_NOP; CLEAN }
  /* ---- entry_NMI / entry_MC (:97-105) ---- */
  :: d_step { STEP && pc[c] == EN_PUSH -> push(c, V_INT0); pc[c] = EN_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == EN_MOVL -> movl_hi(c, V_HI2); pc[c] = EN_JMP; CLEAN }
  :: d_step { STEP && pc[c] == EN_JMP -> pc[c] = HI_PUSHDI; CLEAN }
  :: d_step { STEP && pc[c] == EM_PUSH -> push(c, V_INT0); pc[c] = EM_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == EM_MOVL -> movl_hi(c, V_HI18); pc[c] = EM_JMP; CLEAN }
  :: d_step { STEP && pc[c] == EM_JMP -> pc[c] = HI_PUSHDI; CLEAN }
  /* ---- handle_ist_exception (:107-130) ---- */
  :: d_step { STEP && pc[c] == HI_PUSHDI -> push(c, rdi[c]); pc[c] = HI_PUSHSI; CLEAN }
  :: d_step { STEP && pc[c] == HI_PUSHSI -> push(c, rsi[c]); pc[c] = HI_PUSHAX; CLEAN }
  :: d_step { STEP && pc[c] == HI_PUSHAX -> push(c, rax[c]); pc[c] = HI_PUSHCX; CLEAN }
  :: d_step { STEP && pc[c] == HI_PUSHCX -> push(c, rcx[c]); pc[c] = HI_TEST; CLEAN }
  :: d_step { STEP && pc[c] == HI_TEST -> test_cs(c); pc[c] = HI_JZ; CLEAN }
  :: d_step { STEP && pc[c] == HI_JZ ->
       if
       :: fl[c] & F_ZF -> pc[c] = HI_MOVDI
       :: else -> pc[c] = HI_MOVABS
       fi;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVABS -> rdi[c] = ADDR(ST_PRIMARY, 10); pc[c] = HI_MOVSI; CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVSI -> rsi[c] = rsp[c]; pc[c] = HI_MOVCX; CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVCX -> rcx[c] = V_INT10; pc[c] = HI_MOVSP; CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVSP -> move_rsp(c, rdi[c]); pc[c] = HI_REP; CLEAN }
  :: d_step { STEP && pc[c] == HI_REP -> rep_movsq(c); pc[c] = HI_MOVDI; CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVDI -> rdi[c] = rsp[c]; pc[c] = HI_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == HI_MOVL ->           /* the upper half of the word at 32(%rsp) */
       rd(c, rsp[c] - 4);
       if
       :: t_v == V_HI2 -> rax[c] = V_INT2
       :: t_v == V_HI18 -> rax[c] = V_INT18
       :: else -> CHECK(0)
       fi;
       pc[c] = HI_CMPN;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_CMPN ->           /* 2 - 2 sets ZF; 18 - 2 sets nothing */
       CHECK(rax[c] == V_INT2 || rax[c] == V_INT18);
       if
       :: rax[c] == V_INT2 -> fl[c] = (fl[c] & F_IF) | F_ZF
       :: else -> fl[c] = fl[c] & F_IF
       fi;
       pc[c] = HI_JNE2;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_JNE2 ->
       if
       :: fl[c] & F_ZF -> pc[c] = HI_CALLN
       :: else -> pc[c] = HI_CMPM
       fi;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_CALLN -> call(c, DN_PF, HI_JMP3A); CLEAN }
  :: d_step { STEP && pc[c] == HI_JMP3A -> pc[c] = HI_TEST3; CLEAN }
  :: d_step { STEP && pc[c] == HI_CMPM ->           /* only 18 gets here */
       CHECK(rax[c] == V_INT18);
       fl[c] = (fl[c] & F_IF) | F_ZF;
       pc[c] = HI_JNE4;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_JNE4 ->
       if
       :: fl[c] & F_ZF -> pc[c] = HI_CALLM
       :: else -> pc[c] = HI_UD2
       fi;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_CALLM -> call(c, DM_CLR, HI_JMP3B); CLEAN }
  :: d_step { STEP && pc[c] == HI_JMP3B -> pc[c] = HI_TEST3; CLEAN }
  :: d_step { STEP && pc[c] == HI_UD2 -> CHECK(0); CLEAN }   /* #UD: never reached */
  :: d_step { STEP && pc[c] == HI_TEST3 -> test_cs(c); pc[c] = HI_JZX; CLEAN }
  :: d_step { STEP && pc[c] == HI_JZX ->
       if
       :: fl[c] & F_ZF -> pc[c] = RX_POPCX
       :: else -> pc[c] = HI_JMPG
       fi;
       CLEAN }
  :: d_step { STEP && pc[c] == HI_JMPG -> pc[c] = RG_POPCX; CLEAN }
  /* ---- restore_all_xen / restore_all_guest (:132-140) ---- */
  :: d_step { STEP && pc[c] == RX_POPCX -> pop(c); rcx[c] = t_v; pc[c] = RX_POPAX; CLEAN }
  :: d_step { STEP && pc[c] == RX_POPAX -> pop(c); rax[c] = t_v; pc[c] = RX_POPSI; CLEAN }
  :: d_step { STEP && pc[c] == RX_POPSI -> pop(c); rsi[c] = t_v; pc[c] = RX_POPDI; CLEAN }
  :: d_step { STEP && pc[c] == RX_POPDI -> pop(c); rdi[c] = t_v; pc[c] = RX_ADD; CLEAN }
  :: d_step { STEP && pc[c] == RX_ADD ->            /* an upper-half address: SF set */
       move_rsp(c, rsp[c] - 1); fl[c] = (fl[c] & F_IF) | F_SF; pc[c] = RX_IRET; CLEAN }
  :: d_step { STEP && pc[c] == RX_IRET -> iret(c); CLEAN }
  :: d_step { STEP && pc[c] == RG_POPCX -> pop(c); rcx[c] = t_v; pc[c] = RG_POPAX; CLEAN }
  :: d_step { STEP && pc[c] == RG_POPAX -> pop(c); rax[c] = t_v; pc[c] = RG_POPSI; CLEAN }
  :: d_step { STEP && pc[c] == RG_POPSI -> pop(c); rsi[c] = t_v; pc[c] = RG_POPDI; CLEAN }
  :: d_step { STEP && pc[c] == RG_POPDI -> pop(c); rdi[c] = t_v; pc[c] = RG_ADD; CLEAN }
  :: d_step { STEP && pc[c] == RG_ADD ->
       move_rsp(c, rsp[c] - 1); fl[c] = (fl[c] & F_IF) | F_SF; pc[c] = RG_IRET; CLEAN }
  :: d_step { STEP && pc[c] == RG_IRET -> iret(c); CLEAN }
  /* ---- entry_BP / entry_PF / entry_GP (:143-153) ---- */
  :: d_step { STEP && pc[c] == BP_PUSH -> push(c, V_INT0); pc[c] = BP_MOVL; CLEAN }
  :: d_step { STEP && pc[c] == BP_MOVL -> movl_hi(c, V_HI3); pc[c] = BP_JMP; CLEAN }
  :: d_step { STEP && pc[c] == BP_JMP -> pc[c] = HE_PUSHDI; CLEAN }
  :: d_step { STEP && pc[c] == PF_MOVL -> movl_hi(c, V_HI14); pc[c] = PF_JMP; CLEAN }
  :: d_step { STEP && pc[c] == PF_JMP -> pc[c] = HE_PUSHDI; CLEAN }
  :: d_step { STEP && pc[c] == GP_JMP -> pc[c] = FT_CLI; CLEAN }
  /* ---- handle_exception (:155-160) ---- */
  :: d_step { STEP && pc[c] == HE_PUSHDI -> push(c, rdi[c]); pc[c] = HE_PUSHSI; CLEAN }
  :: d_step { STEP && pc[c] == HE_PUSHSI -> push(c, rsi[c]); pc[c] = HE_PUSHAX; CLEAN }
  :: d_step { STEP && pc[c] == HE_PUSHAX -> push(c, rax[c]); pc[c] = HE_PUSHCX; CLEAN }
  :: d_step { STEP && pc[c] == HE_PUSHCX -> push(c, rcx[c]); pc[c] = HE_CALL; CLEAN }
  :: d_step { STEP && pc[c] == HE_CALL -> call(c, DT_NOP, HE_TEST); CLEAN }
  :: d_step { STEP && pc[c] == HE_TEST -> test_cs(c); pc[c] = HE_JZ; CLEAN }
  :: d_step { STEP && pc[c] == HE_JZ ->
       if
       :: fl[c] & F_ZF -> pc[c] = RX_POPCX
       :: else -> pc[c] = HE_JMPG
       fi;
       CLEAN }
  :: d_step { STEP && pc[c] == HE_JMPG -> pc[c] = RG_POPCX; CLEAN }
  /* ---- entry_DF / fatal_trap (:163-169) ---- */
  :: d_step { STEP && pc[c] == DF_JMP -> pc[c] = FT_CLI; CLEAN }
  :: d_step { STEP && pc[c] == FT_CLI -> fl[c] = fl[c] & ~F_IF; pc[c] = FT_HLT; CLEAN }
  :: d_step { STEP && pc[c] == FT_HLT -> pc[c] = FT_JMP; runst[c] = HALTED; CLEAN }
  :: d_step { STEP && pc[c] == FT_JMP -> pc[c] = FT_HLT; CLEAN }
  /* ---- do_nmi / do_machine_check / do_trap (:173-184) ---- */
  :: d_step { STEP && pc[c] == DN_PF -> pc[c] = DN_BP; CLEAN }
  :: d_step { STEP && pc[c] == DN_BP -> pc[c] = DN_RET; CLEAN }
  :: d_step { STEP && pc[c] == DN_RET -> ret(c); CLEAN }
  :: d_step { STEP && pc[c] == DM_CLR -> mcip[c] = 0; pc[c] = DM_RET; CLEAN }
  :: d_step { STEP && pc[c] == DM_RET -> ret(c); CLEAN }
  :: d_step { STEP && pc[c] == DT_NOP -> pc[c] = DT_RET; CLEAN }
  :: d_step { STEP && pc[c] == DT_RET -> ret(c); CLEAN }
  od
}

init {
  atomic {
    rax[0] = V_INT0; rcx[0] = V_INT0; rsi[0] = V_INT0; rdi[0] = V_INT0;
    nmi_b[0] = NMI; mce_b[0] = MCE; ext_b[0] = EXTERNAL; faults_b = FAULTS;
    runst[0] = RUNNING; fl[0] = F_IF;
    /* the design's alternative `cpu *` lines (:67-72) */
#if defined(CONTEXT_XEN)
    pc[0] = XI_NOP; cpl[0] = 0; rsp[0] = ADDR(ST_PRIMARY, 0)
#elif defined(CONTEXT_GUEST)
    pc[0] = GK_NOP; cpl[0] = 3; rsp[0] = ADDR(ST_GUEST, 0)
#else
    if
    :: pc[0] = XI_NOP; cpl[0] = 0; rsp[0] = ADDR(ST_PRIMARY, 0)   /* xen_idle cpl 0 (:68) */
    :: pc[0] = GK_NOP; cpl[0] = 3; rsp[0] = ADDR(ST_GUEST, 0)     /* guest_kernel cpl 3 (:71) */
    fi
#endif
    ;
    run cpu(0)
  }
}
