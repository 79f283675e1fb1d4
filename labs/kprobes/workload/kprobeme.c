/*
 * kprobeme: the workload of the bpfhol kprobes lab.
 *
 * Once per interval one of its jobs (load_config, refresh_cache, ...) opens a
 * file, reads it and closes the descriptor, except on every N-th open: that
 * open is made by one of the two leaky jobs, which "forget" the close and leak
 * the descriptor.  Which two jobs leak, and which of them makes each leaking
 * open, follow --seed.  Students find out what it does with bpftrace kprobes
 * (and, for the leaks, with user stacks); the grader compares their findings
 * with the ground-truth log (--truth-log).
 *
 * Contract: docs/design.md, section "kprobeme".
 *
 *   kprobeme [--file PATH] [--leak-every N] [--interval-ms MS]
 *            [--duration-s S] [--count N] [--truth-log PATH]
 *            [--spare-fds N] [--hold] [--seed N] [--linger-s S]
 *
 * Notes for maintainers:
 *  - Every open is openat(2) through libc's syscall() (never SYS_open: arm64
 *    has none), called from the one helper open_file().  syscall() is a stub
 *    that leaves the frame pointer alone, and this file is built with frame
 *    pointers and no sibling calls (Makefile), so a user stack taken at the
 *    open shows the job that opened: syscall, <job>, main.  libc's open()
 *    may use rbp as a plain register, which would hide the job.
 *  - The job functions are noinline, each with its own constant, so the
 *    compiler neither inlines nor merges them (identical-code folding).
 *  - --linger-s keeps the process alive after its loop until SIGTERM: a
 *    tracer resolves user-stack symbols from /proc/<pid>/maps when it prints,
 *    which it cannot do once the process is gone.
 *  - The path handed to open() lives in a stack buffer that this process has
 *    just written: bpf programs cannot fault pages in, so a path in an
 *    untouched page would read as an empty string in a probe.
 *  - It prints nothing on success, so the answers are not given away.
 *  - SIGINT/SIGTERM are blocked and collected with sigtimedwait(), so a
 *    signal can never be lost between a check and a sleep.
 *  - --hold is the grader's start barrier: everything a fresh process does
 *    (the dynamic loader's opens, the truth log, the spare descriptors) is
 *    done first, the "start" record is prepared, and then kprobeme waits for
 *    SIGUSR1.  The grader sends it once every student script has really
 *    attached, so a script sees exactly the loop below, as in the lab.
 *  - The truth stays out of reach while scripts run: the records are kept in
 *    memory as plain numbers (no formatting with libc, no write(2)) and the
 *    log is written only when kprobeme exits, which the grader makes happen
 *    after every student script has stopped.  A uprobe on libc's write() or
 *    snprintf(), or a kprobe on vfs_write, sees no answer during the run.
 *    The grader learns the loop is over from --notify-fd: one byte with no
 *    content when start-up is done, and one when the loop is done.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A course's variant renames the program and its functions: variant.h (written by the workloads role from the
 * course seed, grader/variants.py) defines each name as the course's; without it the lab's own names stay.
 * XSTR(name) spells a name as the preprocessor has it, so the truth log and comm say the course's names. */
#if defined(__has_include)
#if __has_include("variant.h")
#include "variant.h"
#endif
#endif
#define STR(x) #x
#define XSTR(x) STR(x)

#define PROG XSTR(kprobeme)
#define MAX_INTERVAL_MS 3600000L    /* one hour */
#define MAX_DURATION_S 31536000L    /* one year */
#define MAX_LEAK_EVERY 1000000L
#define READ_CAP (1024 * 1024)      /* never read more than this per open */
#define MAX_SPARE_FDS 256L
#define MAX_COUNT 1000000L
#define HOLD_MAX_S 900              /* a held kprobeme never waits longer than this */
#define MAX_LINGER_S 3600
#define MAX_NOTIFY_FD 1023
#define NOINLINE __attribute__((noinline, noclone))

struct options {
	const char *file;
	long leak_every;   /* 0 = never leak */
	long interval_ms;
	long duration_s;   /* 0 = run until signalled */
	long count;        /* 0 = no limit on the number of opens */
	long spare_fds;    /* descriptors opened before the loop, so fd numbers start higher */
	int hold;          /* wait for SIGUSR1 before the loop (the grader's barrier) */
	unsigned long seed;  /* which jobs leak, and which of them makes each leaking open */
	long linger_s;     /* after the loop, stay alive (until SIGTERM) at most this long */
	long notify_fd;    /* -1, or a descriptor that gets one byte when ready and one when the loop is done */
	const char *truth_log;
};

static int truth_fd = -1;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG " [--file PATH] [--leak-every N] [--interval-ms MS]\n"
		"                [--duration-s S] [--count N] [--truth-log PATH]\n"
		"                [--spare-fds N] [--hold] [--seed N] [--linger-s S]\n"
		"                [--notify-fd N]\n"
		"  --file PATH       file to open and read every interval\n"
		"  --leak-every N    leak the descriptor of every N-th open (0: never)\n"
		"  --interval-ms MS  time between opens, 1..%ld\n"
		"  --duration-s S    stop after S seconds (0: run until SIGINT/SIGTERM)\n"
		"  --count N         stop after N opens (0: no limit)\n"
		"  --truth-log PATH  JSON lines of what really happened (new file, 0600), written at exit\n"
		"  --spare-fds N     open N descriptors of /dev/null first (0..%ld)\n"
		"  --hold            after start-up, wait for SIGUSR1 (at most %d s) before the loop\n"
		"  --seed N          choose the leaky jobs and their turns from N (default: from time and pid)\n"
		"  --linger-s S      after the loop, wait for SIGTERM at most S s before exiting (0..%d)\n"
		"  --notify-fd N     write one byte to descriptor N when ready and one when the loop is done\n",
		MAX_INTERVAL_MS, MAX_SPARE_FDS, HOLD_MAX_S, MAX_LINGER_S);
}

/* One line on stderr, exit 2: the contract for bad invocations. */
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (try --help)\n", stderr);
	exit(2);
}

static long parse_long(const char *opt, const char *s, long min, long max)
{
	char *end = NULL;
	long v;

	if (s == NULL || *s == '\0')
		die_usage("%s needs a value", opt);
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		die_usage("%s: '%s' is not a whole number", opt, s);
	if (v < min || v > max)
		die_usage("%s: %ld is out of range %ld..%ld", opt, v, min, max);
	return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	o->file = "/proc/uptime";
	o->leak_every = 5;
	o->interval_ms = 1000;
	o->duration_s = 0;
	o->count = 0;
	o->spare_fds = 0;
	o->hold = 0;
	o->seed = (unsigned long)time(NULL) * 2654435761UL ^ (unsigned long)getpid();
	o->linger_s = 0;
	o->notify_fd = -1;
	o->truth_log = NULL;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = NULL;
		const char *eq;
		size_t name_len;

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(arg, "--hold") == 0) {
			o->hold = 1;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0)
			die_usage("unexpected argument '%s'", arg);
		eq = strchr(arg, '=');
		name_len = eq ? (size_t)(eq - arg) : strlen(arg);

#define IS(name) (name_len == strlen(name) && strncmp(arg, name, name_len) == 0)
		if (!(IS("--file") || IS("--leak-every") || IS("--interval-ms") ||
		      IS("--duration-s") || IS("--truth-log") || IS("--count") ||
		      IS("--spare-fds") || IS("--seed") || IS("--linger-s") || IS("--notify-fd")))
			die_usage("unknown option '%.*s'", (int)name_len, arg);
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc)
				die_usage("%s needs a value", arg);
			val = argv[++i];
		}

		if (IS("--file")) {
			if (*val == '\0')
				die_usage("--file must not be empty");
			if (strlen(val) >= PATH_MAX)
				die_usage("--file is longer than %d bytes", PATH_MAX - 1);
			o->file = val;
		} else if (IS("--leak-every")) {
			o->leak_every = parse_long("--leak-every", val, 0, MAX_LEAK_EVERY);
		} else if (IS("--interval-ms")) {
			o->interval_ms = parse_long("--interval-ms", val, 1, MAX_INTERVAL_MS);
		} else if (IS("--duration-s")) {
			o->duration_s = parse_long("--duration-s", val, 0, MAX_DURATION_S);
		} else if (IS("--count")) {
			o->count = parse_long("--count", val, 0, MAX_COUNT);
		} else if (IS("--spare-fds")) {
			o->spare_fds = parse_long("--spare-fds", val, 0, MAX_SPARE_FDS);
		} else if (IS("--seed")) {
			o->seed = (unsigned long)parse_long("--seed", val, 0, LONG_MAX);
		} else if (IS("--linger-s")) {
			o->linger_s = parse_long("--linger-s", val, 0, MAX_LINGER_S);
		} else if (IS("--notify-fd")) {
			o->notify_fd = parse_long("--notify-fd", val, 0, MAX_NOTIFY_FD);
		} else if (IS("--truth-log")) {
			if (*val == '\0')
				die_usage("--truth-log must not be empty");
			o->truth_log = val;
		}
#undef IS
	}
}

/* ---- ground-truth log --------------------------------------------------- */

struct buf {
	char data[4 * PATH_MAX + 512];
	size_t len;
	int overflow;
};

static void buf_add(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	size_t room = sizeof(b->data) - b->len;

	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		b->overflow = 1;
		return;
	}
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Append s as a JSON string.  Valid UTF-8 passes through; quotes, backslashes
 * and control characters are escaped; a byte that is not valid UTF-8 (Linux
 * paths are bytes) is written as \u00XX, i.e. read as Latin-1.
 */
static void buf_add_json_string(struct buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);

	buf_add(b, "\"");
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t l;

		if (c == '"' || c == '\\') {
			buf_add(b, "\\%c", c);
			i++;
		} else if (c == '\n') {
			buf_add(b, "\\n");
			i++;
		} else if (c == '\t') {
			buf_add(b, "\\t");
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			buf_add(b, "\\u%04x", c);
			i++;
		} else if ((l = utf8_seq_len(s + i, n - i)) > 0) {
			buf_add(b, "%.*s", (int)l, (const char *)(s + i));
			i += l;
		} else {
			buf_add(b, "\\u%04x", c);
			i++;
		}
	}
	buf_add(b, "\"");
}

/* A record's text starts with the time it happened (kept with the record, formatted later). */
static void buf_start_event_at(struct buf *b, const char *event, const struct timespec *when)
{
	b->len = 0;
	b->overflow = 0;
	buf_add(b, "{\"t\": %lld.%06ld, \"event\": \"%s\"", (long long)when->tv_sec,
		when->tv_nsec / 1000, event);
}

static void buf_start_event(struct buf *b, const char *event)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	buf_start_event_at(b, event, &now);
}

/* Finish the line and write it at once: one write(2) per event, no stdio buffer. */
static void buf_emit(struct buf *b)
{
	size_t off = 0;

	if (truth_fd < 0)
		return;
	buf_add(b, "}\n");
	if (b->overflow) {
		fprintf(stderr, PROG ": truth-log record too long, dropped\n");
		return;
	}
	while (off < b->len) {
		ssize_t w = write(truth_fd, b->data + off, b->len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, PROG ": writing the truth log: %s\n", strerror(errno));
			exit(1);
		}
		off += (size_t)w;
	}
}

/* ---- time --------------------------------------------------------------- */

static void ts_add_ms(struct timespec *t, long ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * Sleep until the monotonic deadline or until SIGINT/SIGTERM arrives.
 * Returns the signal number, or 0 when the deadline passed.
 */
static int wait_until(const struct timespec *deadline, const sigset_t *sigs)
{
	for (;;) {
		struct timespec now, rel;
		int sig;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!ts_before(&now, deadline))
			return 0;
		rel.tv_sec = deadline->tv_sec - now.tv_sec;
		rel.tv_nsec = deadline->tv_nsec - now.tv_nsec;
		if (rel.tv_nsec < 0) {
			rel.tv_sec--;
			rel.tv_nsec += 1000000000L;
		}
		sig = sigtimedwait(sigs, NULL, &rel);
		if (sig > 0)
			return sig;
		if (errno != EAGAIN && errno != EINTR) {
			fprintf(stderr, PROG ": sigtimedwait: %s\n", strerror(errno));
			exit(1);
		}
	}
}

/* ---- the work ----------------------------------------------------------- */

static void read_all(int fd)
{
	char data[4096];
	size_t total = 0;

	while (total < READ_CAP) {
		ssize_t r = read(fd, data, sizeof(data));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		total += (size_t)r;
	}
}

/* openat(2) through libc's syscall() stub, which keeps the caller's frame pointer (see the top). */
static NOINLINE int open_file(const char *path)
{
	long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);

	/* Work after the call: never a sibling call, so this frame stays on the stack. */
	__asm__ __volatile__("" : : : "memory");
	return (int)fd;
}

/*
 * What every job does: open, read, and close unless it is one of the leaky
 * jobs.  Inlined into each job, so the open is called from the job itself.
 * Returns the descriptor, or -errno.
 */
static inline __attribute__((always_inline)) int job_body(const char *path, int keep_open, int id)
{
	int fd = open_file(path);

	if (fd < 0)
		return -errno;
	read_all(fd);
	if (!keep_open)
		close(fd);
	__asm__ __volatile__("" : : "r"(id) : "memory");   /* each job its own code: no merging */
	return fd;
}

static NOINLINE int load_config(const char *path, int keep_open)   { return job_body(path, keep_open, 1); }
static NOINLINE int refresh_cache(const char *path, int keep_open) { return job_body(path, keep_open, 2); }
static NOINLINE int poll_status(const char *path, int keep_open)   { return job_body(path, keep_open, 3); }
static NOINLINE int read_stats(const char *path, int keep_open)    { return job_body(path, keep_open, 4); }
static NOINLINE int check_quota(const char *path, int keep_open)   { return job_body(path, keep_open, 5); }
static NOINLINE int update_index(const char *path, int keep_open)  { return job_body(path, keep_open, 6); }

static const struct job {
	const char *name;
	int (*run)(const char *path, int keep_open);
} jobs[] = {
	{XSTR(load_config), load_config},
	{XSTR(refresh_cache), refresh_cache},
	{XSTR(poll_status), poll_status},
	{XSTR(read_stats), read_stats},
	{XSTR(check_quota), check_quota},
	{XSTR(update_index), update_index},
};
#define N_JOBS ((int)(sizeof(jobs) / sizeof(jobs[0])))

/* ---- records kept until exit --------------------------------------------- */

/*
 * What the loop did, as plain numbers.  Nothing is formatted (no libc
 * snprintf a uprobe could read) and nothing is written (no write(2) a probe on
 * write or vfs_write could read) while student scripts may be tracing: the
 * log is written at exit, after the grader has stopped every script.
 */
struct open_rec {
	struct timespec t;   /* when the job returned (its close done, or its leak made) */
	long seq;
	int job;             /* index in jobs[] */
	int fd;              /* the descriptor, or -errno when the open failed */
	int leak;
};

static struct buf start_ev;           /* formatted at start-up, before any probe of the run is live */
static int start_written;
static struct timespec released_at;
static int released, released_written;
static struct open_rec *recs;
static size_t n_recs, cap_recs;

static void emit_open_record(const char *path, const struct open_rec *r)
{
	struct buf ev;

	if (r->fd < 0) {
		buf_start_event_at(&ev, "error", &r->t);
		buf_add(&ev, ", \"seq\": %ld, \"op\": \"open\", \"job\": \"%s\", \"path\": ", r->seq,
			jobs[r->job].name);
		buf_add_json_string(&ev, path);
		buf_add(&ev, ", \"errno\": %d, \"error\": ", -r->fd);
		buf_add_json_string(&ev, strerror(-r->fd));
		buf_emit(&ev);
		return;
	}
	buf_start_event_at(&ev, "open", &r->t);
	buf_add(&ev, ", \"seq\": %ld, \"job\": \"%s\", \"path\": ", r->seq, jobs[r->job].name);
	buf_add_json_string(&ev, path);
	buf_add(&ev, ", \"fd\": %d", r->fd);
	buf_emit(&ev);
	buf_start_event_at(&ev, r->leak ? "leak" : "close", &r->t);
	buf_add(&ev, ", \"seq\": %ld, \"job\": \"%s\", \"fd\": %d", r->seq, jobs[r->job].name, r->fd);
	buf_emit(&ev);
}

/* Write what is kept so far (start, released, the loop's records) and forget the loop's records. */
static void flush_records(const char *path)
{
	if (!start_written) {
		buf_emit(&start_ev);
		start_written = 1;
	}
	if (released && !released_written) {
		struct buf ev;

		buf_start_event_at(&ev, "released", &released_at);
		buf_emit(&ev);
		released_written = 1;
	}
	for (size_t i = 0; i < n_recs; i++)
		emit_open_record(path, &recs[i]);
	n_recs = 0;
}

/* Keep one open of the loop.  Only if memory runs out are the records so far written early. */
static void keep_open_record(const char *path, long seq, int job, int fd, int leak)
{
	struct open_rec r;

	if (truth_fd < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &r.t);
	r.seq = seq;
	r.job = job;
	r.fd = fd;
	r.leak = leak;
	if (n_recs == cap_recs) {
		size_t want = cap_recs ? cap_recs * 2 : 256;
		struct open_rec *more = realloc(recs, want * sizeof(*recs));

		if (more) {
			recs = more;
			cap_recs = want;
		} else {
			flush_records(path);
		}
	}
	if (n_recs < cap_recs)
		recs[n_recs++] = r;
	else
		emit_open_record(path, &r);
}

/* One byte with no content: the grader's sign that start-up (then the loop) is over. */
static void notify(const struct options *o)
{
	ssize_t w;

	if (o->notify_fd < 0)
		return;
	do
		w = write((int)o->notify_fd, ".", 1);
	while (w < 0 && errno == EINTR);
}

/* splitmix64: a small, well-mixed generator; the same seed gives the same run. */
static unsigned long long rng_state;

static unsigned long long rng_next(void)
{
	unsigned long long z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int rng_below(int n)
{
	return (int)(rng_next() % (unsigned long long)n);
}

int main(int argc, char **argv)
{
	struct options o;
	struct buf ev;
	sigset_t sigs, blocked;
	struct timespec next, end;
	long opens = 0, closes = 0, leaks = 0, errors = 0;
	int sig = 0;
	int leaky[2], steady[N_JOBS - 2], n_steady = 0;

	parse_args(argc, argv, &o);
	/* The grader may close its end of --notify-fd early: never die of it. */
	signal(SIGPIPE, SIG_IGN);

	/* The two leaky jobs, from the seed; the other jobs always close. */
	rng_state = o.seed;
	leaky[0] = rng_below(N_JOBS);
	leaky[1] = rng_below(N_JOBS - 1);
	if (leaky[1] >= leaky[0])
		leaky[1]++;
	for (int j = 0; j < N_JOBS; j++)
		if (j != leaky[0] && j != leaky[1])
			steady[n_steady++] = j;

	/* The lab filters on comm == "kprobeme", whatever name we were started as. */
	prctl(PR_SET_NAME, PROG, 0, 0, 0);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	/* SIGUSR1 (the grader's "go") is blocked too: collected by --hold, never fatal later. */
	blocked = sigs;
	sigaddset(&blocked, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0) {
		fprintf(stderr, PROG ": sigprocmask: %s\n", strerror(errno));
		return 1;
	}

	if (o.truth_log) {
		truth_fd = open(o.truth_log,
				O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (truth_fd < 0) {
			fprintf(stderr, PROG ": --truth-log %s: %s (it must not exist yet)\n",
				o.truth_log, strerror(errno));
			return 2;
		}
	}

	for (long i = 0; i < o.spare_fds; i++) {
		if (open("/dev/null", O_RDONLY) < 0) {
			fprintf(stderr, PROG ": --spare-fds: /dev/null: %s\n", strerror(errno));
			return 1;
		}
	}

	/* Formatted now, before any probe of the run is live; written at exit with the rest. */
	buf_start_event(&start_ev, "start");
	buf_add(&start_ev, ", \"pid\": %ld, \"file\": ", (long)getpid());
	buf_add_json_string(&start_ev, o.file);
	buf_add(&start_ev, ", \"leak_every\": %ld, \"interval_ms\": %ld, \"duration_s\": %ld",
		o.leak_every, o.interval_ms, o.duration_s);
	buf_add(&start_ev, ", \"count\": %ld, \"spare_fds\": %ld, \"hold\": %s", o.count, o.spare_fds,
		o.hold ? "true" : "false");
	buf_add(&start_ev, ", \"seed\": %lu, \"jobs\": [", o.seed);
	for (int j = 0; j < N_JOBS; j++)
		buf_add(&start_ev, "%s\"%s\"", j ? ", " : "", jobs[j].name);
	buf_add(&start_ev, "], \"leaky\": [\"%s\", \"%s\"]", jobs[leaky[0]].name, jobs[leaky[1]].name);
	notify(&o);

	if (o.hold) {
		struct timespec limit;

		clock_gettime(CLOCK_MONOTONIC, &limit);
		limit.tv_sec += HOLD_MAX_S;
		sig = wait_until(&limit, &blocked);
		if (sig != SIGUSR1) {
			flush_records(o.file);
			buf_start_event(&ev, "exit");
			buf_add(&ev, ", \"opens\": 0, \"closes\": 0, \"leaks\": 0, \"released\": false");
			buf_emit(&ev);
			return sig ? 0 : 3;
		}
		sig = 0;
		clock_gettime(CLOCK_REALTIME, &released_at);
		released = 1;
	}

	clock_gettime(CLOCK_MONOTONIC, &next);
	end = next;
	end.tv_sec += o.duration_s;

	for (long seq = 1;; seq++) {
		/* Written right now, so its page is present when a probe reads it. */
		char path[PATH_MAX];
		const struct job *job;
		int fd, leak;

		if (o.duration_s > 0 && !ts_before(&next, &end))
			break;
		if (o.count > 0 && seq > o.count)
			break;
		memset(path, 0, sizeof(path));
		strcpy(path, o.file);

		leak = o.leak_every > 0 && seq % o.leak_every == 0;
		job = leak ? &jobs[leaky[rng_below(2)]] : &jobs[steady[rng_below(n_steady)]];
		fd = job->run(path, leak);
		if (fd < 0) {
			errors++;
		} else {
			opens++;
			if (leak)
				leaks++;
			else
				closes++;
		}
		keep_open_record(o.file, seq, (int)(job - jobs), fd, leak);

		if (o.count > 0 && seq >= o.count)
			break;
		ts_add_ms(&next, o.interval_ms);
		if (o.duration_s > 0 && ts_before(&end, &next)) {
			sig = wait_until(&end, &sigs);
			break;
		}
		sig = wait_until(&next, &sigs);
		if (sig)
			break;
	}

	notify(&o);
	if (o.linger_s > 0 && !sig) {
		struct timespec limit, done_at;

		/* Stay, so a tracer can still resolve our stacks; the loop's figures are written at exit. */
		clock_gettime(CLOCK_REALTIME, &done_at);
		clock_gettime(CLOCK_MONOTONIC, &limit);
		limit.tv_sec += o.linger_s;
		sig = wait_until(&limit, &sigs);
		flush_records(o.file);
		buf_start_event_at(&ev, "done", &done_at);
		buf_add(&ev, ", \"opens\": %ld, \"closes\": %ld, \"leaks\": %ld", opens, closes, leaks);
		buf_emit(&ev);
	}

	flush_records(o.file);
	buf_start_event(&ev, "exit");
	buf_add(&ev, ", \"opens\": %ld, \"closes\": %ld, \"leaks\": %ld", opens, closes, leaks);
	if (errors)
		buf_add(&ev, ", \"errors\": %ld", errors);
	if (sig)
		buf_add(&ev, ", \"signal\": \"%s\"", sig == SIGINT ? "SIGINT" : "SIGTERM");
	buf_emit(&ev);
	/*
	 * No close(2) of the truth log: it was opened before the loop (and, under
	 * --hold, before any probe was live), so closing it here would show a
	 * tracer one close more than the loop made.  exit() releases it without
	 * a close(2) call.
	 */
	return 0;
}
