// execsight collector: tracepoints only (no kprobes). task_struct fields are read at
// offsets taken from the running kernel's BTF (OFF_* macros), never from headers.
#include <uapi/linux/ptrace.h>

#define COMM_LEN 16
#ifndef FNAME_LEN
#define FNAME_LEN 256
#endif
#ifndef ARGSIZE
#define ARGSIZE 4096
#endif
#ifndef ENVSIZE
#define ENVSIZE 8192
#endif
#define CWDSIZE 4096  // bytes of working-directory path components (a power of two)
#define CWD_NAME 256  // one component, NUL included
#define CWD_DEPTH 48  // components and mount crossings walked
#ifndef WAKE_EVERY
#define WAKE_EVERY 1024  // a power of two
#endif
#define TASK_DEAD 0x80

enum ev_type { EV_FORK = 1, EV_EXEC = 2, EV_EXIT = 3, EV_ARGS = 4, EV_OOM = 5 };
enum tstate_kind { ST_ONCPU = 1, ST_RUNQ = 2, ST_BLOCKED = 3 };

struct totals {
    u64 on_cpu_ns, runq_ns, blocked_ns;
    u64 blk_read_bytes, blk_write_bytes, blk_io_ns;
    u64 net_tx_bytes, net_rx_bytes;
};

struct fork_ev {
    u32 type, pid, ppid, flags;
    u64 ts, start, pstart, cgroup;
    char comm[COMM_LEN];
};

struct exec_ev {
    u32 type, pid, old_pid, ppid;
    u64 ts, start, pstart, cgroup;
    u32 uid, flags;
    char comm[COMM_LEN];
    char filename[FNAME_LEN];
    u32 args_len, args_total;
    // NUL-separated argv from the new image's stack (args_len bytes), then trailers: u32 env_len,
    // u32 env_total and env_len bytes of the NUL-separated environment; with HAVE_CWD, u32 cwd_len,
    // u32 cwd_complete and cwd_len bytes of the working directory's components, leaf first, each
    // NUL-terminated. Only the used bytes are sent.
    char args[ARGSIZE + 8 + ENVSIZE + 8 + CWDSIZE];
};

struct exit_ev {
    u32 type, pid, exit_code, flags;
    u64 ts, start, cgroup;
    u32 tid, _pad;
    char comm[COMM_LEN];
    struct totals tot;
};

struct oom_ev {
    u32 type, pid;
    u64 ts;
};

struct tstate {
    u64 ts;
    u32 state, tgid;
};

struct blk_key {
    u32 dev, _pad;
    u64 sector;
};

struct blk_val {
    u64 ts;
    u32 tgid, bytes;
    u32 write, _pad;
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_ARRAY(lost, u64, 8);                       // index: event type whose reservation failed
BPF_HASH(ptotals, u32, struct totals, 65536);  // tgid -> totals (flushed by user space)
BPF_HASH(tstates, u32, struct tstate, 65536);  // tid -> scheduler state since ts
BPF_HASH(blkreq, struct blk_key, struct blk_val, 16384);
BPF_HASH(oomed, u32, u64, 1024);               // victim tgid -> time
BPF_PERCPU_ARRAY(exec_scratch, struct exec_ev, 1);  // exec events are built here, sent at their real length
BPF_PERCPU_ARRAY(rb_submitted, u64, 1);             // events submitted per CPU (for wake-up batching)

// Events are submitted without waking user space, which drains the buffer on its own schedule
// (every 50 ms); every WAKE_EVERY-th event of a CPU wakes it early, so a burst is drained sooner.
// A wake-up per event (bcc's default) costs the traced process an irq_work and the collector a
// context switch for every fork, exec and exit.
static __always_inline u64 rb_flags(void) {
    u32 zero = 0;
    u64 *n = rb_submitted.lookup(&zero);
    if (!n) return 0;
    *n += 1;
    return (*n & (WAKE_EVERY - 1)) == 0 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void count_lost(u32 type) {
    u64 *v = lost.lookup(&type);
    if (v) __sync_fetch_and_add(v, 1);
}

static __always_inline u32 task_u32(void *task, int off) {
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)task + off);
    return v;
}

static __always_inline u64 task_u64(void *task, int off) {
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)task + off);
    return v;
}

static __always_inline void *task_ptr(void *task, int off) {
    void *v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (char *)task + off);
    return v;
}

// The thread group leader: the process that a thread belongs to. Parentage and identity are the
// process's (tgid, leader's start time), never those of the thread that forked, exec'd or exited last.
static __always_inline void *leader_of(void *task) {
    void *leader = task_ptr(task, OFF_GROUP_LEADER);
    return leader ? leader : task;
}

#ifdef HAVE_CWD
struct cwd_buf {
    char b[CWDSIZE];
};
BPF_PERCPU_ARRAY(cwd_scratch, struct cwd_buf, 1);

// The working directory's components, leaf first, each NUL-terminated: dentries walked up to the
// mount root, across mounts to the root of the mount namespace (d_path's walk, without its locks).
// Returns the bytes written (< CWDSIZE); *complete = 1 when the root was reached within the limits.
static __always_inline u32 read_cwd(void *task, char *buf, u32 *complete) {
    void *fs = task_ptr(task, OFF_TASK_FS);
    void *dentry = task_ptr(fs, OFF_FS_PWD + OFF_PATH_DENTRY);
    void *vfsmnt = task_ptr(fs, OFF_FS_PWD + OFF_PATH_MNT);
    void *mnt = (char *)vfsmnt - OFF_MOUNT_MNT;
    u32 pos = 0;
    *complete = 0;
    if (!fs || !dentry || !vfsmnt) return 0;
    for (int i = 0; i < CWD_DEPTH; i++) {
        if (dentry == task_ptr(vfsmnt, OFF_VFSMOUNT_ROOT)) {
            void *parent_mnt = task_ptr(mnt, OFF_MOUNT_PARENT);
            if (!parent_mnt || parent_mnt == mnt) { *complete = 1; break; }
            dentry = task_ptr(mnt, OFF_MOUNT_MOUNTPOINT);
            mnt = parent_mnt;
            vfsmnt = (char *)mnt + OFF_MOUNT_MNT;
            continue;
        }
        void *parent = task_ptr(dentry, OFF_DENTRY_PARENT);
        if (!parent || parent == dentry) { *complete = 1; break; }
        if (pos > CWDSIZE - CWD_NAME - 1) break;
        void *name = task_ptr(dentry, OFF_DENTRY_NAME + OFF_QSTR_NAME);
        int n = bpf_probe_read_kernel_str(buf + (pos & (CWDSIZE - 1)), CWD_NAME, name);
        if (n <= 0) break;
        // masked (a no-op after the check above) so that every path through the loop leaves pos in
        // one range: the verifier can then prune instead of following each walk separately
        pos = (pos + n) & (CWDSIZE - 1);
        dentry = parent;
    }
    return pos & (CWDSIZE - 1);
}
#endif

static __always_inline struct totals *totals_of(u32 tgid) {
    struct totals zero = {};
    return ptotals.lookup_or_try_init(&tgid, &zero);
}

// ---- process lifecycle -------------------------------------------------------

RAW_TRACEPOINT_PROBE(sched_process_fork) {
    void *child = (void *)ctx->args[1];
    u32 cpid = task_u32(child, OFF_PID);
    u32 ctgid = task_u32(child, OFF_TGID);
    if (cpid != ctgid) return 0;  // a new thread, not a new process
    struct fork_ev *ev = events.ringbuf_reserve(sizeof(struct fork_ev));
    if (!ev) { count_lost(EV_FORK); return 0; }
    // real_parent is the forking thread, which need not be its process's leader
    void *parent = leader_of(task_ptr(child, OFF_REAL_PARENT));
    ev->type = EV_FORK;
    ev->pid = ctgid;
    ev->ppid = task_u32(parent, OFF_TGID);
    ev->flags = 0;
    ev->ts = bpf_ktime_get_boot_ns();
    ev->start = task_u64(child, OFF_START_BOOTTIME);
    ev->pstart = task_u64(parent, OFF_START_BOOTTIME);
    ev->cgroup = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
    events.ringbuf_submit(ev, rb_flags());
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    // argv is read from the new image (mm->arg_start..arg_end): those pages were just written by
    // the kernel, unlike the caller's argv strings, which may not be faulted in after fork.
    u32 zero = 0;
    struct exec_ev *ev = exec_scratch.lookup(&zero);
    if (!ev) return 0;
    void *task = (void *)bpf_get_current_task();
    u64 id = bpf_get_current_pid_tgid();
    void *parent = leader_of(task_ptr(task, OFF_REAL_PARENT));
    ev->type = EV_EXEC;
    ev->pid = id >> 32;
    ev->old_pid = args->old_pid;
    ev->ppid = task_u32(parent, OFF_TGID);
    ev->ts = bpf_ktime_get_boot_ns();
    ev->start = task_u64(task, OFF_START_BOOTTIME);
    ev->pstart = task_u64(parent, OFF_START_BOOTTIME);
    ev->cgroup = bpf_get_current_cgroup_id();
    ev->uid = (u32)bpf_get_current_uid_gid();
    // bit 0: the BTF offsets read back this task's own pid and tgid (checked per event)
    ev->flags = (task_u32(task, OFF_TGID) == (u32)(id >> 32) && task_u32(task, OFF_PID) == (u32)id) ? 1 : 0;
    bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
    unsigned short loc = args->data_loc_filename & 0xFFFF;
    bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), (char *)args + loc);
    void *mm = task_ptr(task, OFF_MM);
    u64 astart = task_u64(mm, OFF_MM_ARG_START);
    u64 aend = task_u64(mm, OFF_MM_ARG_END);
    u64 total = aend > astart ? aend - astart : 0;
    u32 len = total > ARGSIZE - 1 ? ARGSIZE - 1 : (u32)total;
    ev->args_total = (u32)total;
    ev->args_len = 0;
    if (len > 0 && bpf_probe_read_user(ev->args, len & (ARGSIZE - 1), (void *)astart) == 0)
        ev->args_len = len;
    // the environment, read like argv (what /proc/<pid>/environ shows, but before the process can exit)
    u32 alen = ev->args_len & (ARGSIZE - 1);
    u64 estart = task_u64(mm, OFF_MM_ENV_START);
    u64 eend = task_u64(mm, OFF_MM_ENV_END);
    u64 etotal = eend > estart ? eend - estart : 0;
    u32 elen = etotal > ENVSIZE - 1 ? ENVSIZE - 1 : (u32)etotal;
    if (elen > 0 && bpf_probe_read_user(ev->args + alen + 8, elen & (ENVSIZE - 1), (void *)estart) != 0)
        elen = 0;
    elen &= ENVSIZE - 1;
    u32 trailer[2] = {elen, (u32)etotal};
    bpf_probe_read_kernel(ev->args + alen, sizeof(trailer), trailer);
    u32 size = offsetof(struct exec_ev, args) + alen + 8 + elen;
#ifdef HAVE_CWD
    struct cwd_buf *cb = cwd_scratch.lookup(&zero);
    if (cb) {
        u32 complete = 0;
        u32 clen = read_cwd(task, cb->b, &complete) & (CWDSIZE - 1);
        u32 coff = alen + 8 + elen;
        u32 ctrailer[2] = {clen, complete};
        bpf_probe_read_kernel(ev->args + coff, sizeof(ctrailer), ctrailer);
        if (clen > 0) bpf_probe_read_kernel(ev->args + coff + 8, clen, cb->b);
        size += 8 + clen;
    }
#endif
    if (size > sizeof(struct exec_ev)) size = sizeof(struct exec_ev);
    if (events.ringbuf_output(ev, size, rb_flags()) != 0) count_lost(EV_EXEC);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id, tgid = id >> 32;
    tstates.delete(&tid);
    void *task = (void *)bpf_get_current_task();
    // The process exits with the last thread of its group, which need not be the leader (the leader
    // may have exited first, or the threads of an exit_group may finish in any order).
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead) return 0;
#else
    // group_dead, as do_exit computed it: the live count it decremented (two threads exiting at once
    // may both read 0; user space keeps the first exit of a process)
    if (task_u32(task_ptr(task, OFF_SIGNAL), OFF_SIGNAL_LIVE) != 0) return 0;
#endif
    struct exit_ev *ev = events.ringbuf_reserve(sizeof(struct exit_ev));
    if (!ev) { count_lost(EV_EXIT); ptotals.delete(&tgid); return 0; }
    void *leader = leader_of(task);
    ev->type = EV_EXIT;
    ev->pid = tgid;
    ev->exit_code = task_u32(task, OFF_EXIT_CODE);
    ev->tid = tid;
    ev->_pad = 0;
    ev->ts = bpf_ktime_get_boot_ns();
    ev->start = task_u64(leader, OFF_START_BOOTTIME);  // the process's start, not this thread's
    ev->cgroup = bpf_get_current_cgroup_id();
    ev->flags = oomed.lookup(&tgid) ? 1 : 0;
    oomed.delete(&tgid);
    bpf_probe_read_kernel_str(&ev->comm, sizeof(ev->comm), (char *)leader + OFF_COMM);
    struct totals *t = ptotals.lookup(&tgid);
    if (t) {
        ev->tot = *t;
        ptotals.delete(&tgid);
    } else {
        __builtin_memset(&ev->tot, 0, sizeof(ev->tot));
    }
    events.ringbuf_submit(ev, rb_flags());
    return 0;
}

TRACEPOINT_PROBE(oom, mark_victim) {
    u32 pid = args->pid;
    u64 now = bpf_ktime_get_boot_ns();
    oomed.update(&pid, &now);
    struct oom_ev *ev = events.ringbuf_reserve(sizeof(struct oom_ev));
    if (!ev) { count_lost(EV_OOM); return 0; }
    ev->type = EV_OOM;
    ev->pid = pid;
    ev->ts = now;
    events.ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
    return 0;
}

// ---- CPU: on-CPU, run-queue and blocked time, aggregated per tgid -------------

RAW_TRACEPOINT_PROBE(sched_switch) {
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
    u64 preempt = ctx->args[0];
    void *next = (void *)ctx->args[2];
    u64 prev_state = ctx->args[3];
    u64 now = bpf_ktime_get_boot_ns();
    u64 id = bpf_get_current_pid_tgid();
    u32 ptid = (u32)id, ptgid = id >> 32;
    if (ptid) {
        struct tstate *s = tstates.lookup(&ptid);
        if (s && s->state == ST_ONCPU) {
            struct totals *t = totals_of(ptgid);
            if (t) __sync_fetch_and_add(&t->on_cpu_ns, now - s->ts);
        }
        if (prev_state & TASK_DEAD) {
            tstates.delete(&ptid);
        } else {
            struct tstate ns = {now, (preempt || prev_state == 0) ? ST_RUNQ : ST_BLOCKED, ptgid};
            tstates.update(&ptid, &ns);
        }
    }
    u32 ntid = task_u32(next, OFF_PID);
    if (!ntid) return 0;
    u32 ntgid = task_u32(next, OFF_TGID);
    struct tstate *s = tstates.lookup(&ntid);
    if (s) {
        struct totals *t = totals_of(ntgid);
        if (t && s->state == ST_RUNQ) __sync_fetch_and_add(&t->runq_ns, now - s->ts);
        else if (t && s->state == ST_BLOCKED) __sync_fetch_and_add(&t->blocked_ns, now - s->ts);
    }
    struct tstate ns = {now, ST_ONCPU, ntgid};
    tstates.update(&ntid, &ns);
    return 0;
}

static __always_inline int on_wakeup(void *p) {
    u32 tid = task_u32(p, OFF_PID);
    if (!tid) return 0;
    u64 now = bpf_ktime_get_boot_ns();
    struct tstate *s = tstates.lookup(&tid);
    if (s) {
        if (s->state == ST_BLOCKED) {
            struct totals *t = totals_of(s->tgid);
            if (t) __sync_fetch_and_add(&t->blocked_ns, now - s->ts);
            s->state = ST_RUNQ;
            s->ts = now;
        }
        return 0;
    }
    struct tstate ns = {now, ST_RUNQ, task_u32(p, OFF_TGID)};
    tstates.update(&tid, &ns);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup) { return on_wakeup((void *)ctx->args[0]); }
RAW_TRACEPOINT_PROBE(sched_wakeup_new) { return on_wakeup((void *)ctx->args[0]); }

// ---- block I/O: remember the issuer, account at completion (interrupt context) ----

TRACEPOINT_PROBE(block, block_rq_issue) {
    if (args->bytes == 0) return 0;
    struct blk_key k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    struct blk_val v = {};
    v.ts = bpf_ktime_get_boot_ns();
    v.tgid = bpf_get_current_pid_tgid() >> 32;
    v.bytes = args->bytes;
    char rw[4] = {};
    bpf_probe_read_kernel(rw, sizeof(rw), args->rwbs);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (rw[i] == 'W') v.write = 1;
    }
    blkreq.update(&k, &v);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete) {
    struct blk_key k = {};
    k.dev = args->dev;
    k.sector = args->sector;
    struct blk_val *v = blkreq.lookup(&k);
    if (!v) return 0;
    struct totals *t = totals_of(v->tgid);
    if (t) {
        if (v->write) __sync_fetch_and_add(&t->blk_write_bytes, v->bytes);
        else __sync_fetch_and_add(&t->blk_read_bytes, v->bytes);
        __sync_fetch_and_add(&t->blk_io_ns, bpf_ktime_get_boot_ns() - v->ts);
    }
    blkreq.delete(&k);
    return 0;
}

// ---- network: socket payload bytes per process --------------------------------

#ifdef HAVE_SOCK_LENGTH
TRACEPOINT_PROBE(sock, sock_send_length) {
    if (args->ret <= 0) return 0;
    struct totals *t = totals_of(bpf_get_current_pid_tgid() >> 32);
    if (t) __sync_fetch_and_add(&t->net_tx_bytes, args->ret);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length) {
    if (args->ret <= 0 || (args->flags & 2)) return 0;  // MSG_PEEK reads nothing
    struct totals *t = totals_of(bpf_get_current_pid_tgid() >> 32);
    if (t) __sync_fetch_and_add(&t->net_rx_bytes, args->ret);
    return 0;
}
#endif

// Fallback where the sock tracepoints are missing (or NET_SYSCALLS is asked for): the byte counts
// that the socket send/receive syscalls return. Limits: write()/read()/writev()/readv()/splice()/
// sendfile() on a socket and io_uring are not counted, nor sendmmsg/recvmmsg (they return message
// counts); a recvmsg/recvfrom with MSG_PEEK is counted although it consumes nothing. Enabling the
// syscall tracepoints also puts every task on the syscall tracing path (a small cost per syscall).
#ifdef NET_SYSCALLS
static __always_inline int net_add(long ret, int tx) {
    if (ret <= 0) return 0;
    struct totals *t = totals_of(bpf_get_current_pid_tgid() >> 32);
    if (!t) return 0;
    if (tx) __sync_fetch_and_add(&t->net_tx_bytes, ret);
    else __sync_fetch_and_add(&t->net_rx_bytes, ret);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return net_add(args->ret, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return net_add(args->ret, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return net_add(args->ret, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { return net_add(args->ret, 0); }
#endif
