/*
 * uprobeme: the workload of the bpfhol uprobes lab.
 *
 * Each iteration it takes an order (process_order(order_id, qty) returns its price), fetches a
 * quote (fetch_quote(seq): 0.1-0.4 ms, or 30-60 ms on the run's slow calls) and runs one of its
 * four jobs; two of the jobs (the "parsers", drawn from --seed) parse a field with libc's strtol()
 * through parse_field().  Students find all of it with uprobes and uretprobes; the grader compares
 * their findings with the ground-truth log (--truth-log), labs/uprobes/checks.py.
 *
 *   uprobeme [--count N] [--interval-ms MS] [--duration-s S] [--slow-calls K] [--seed N]
 *            [--truth-log PATH] [--hold] [--linger-s S] [--notify-fd N]
 *
 * Notes for maintainers:
 *  - Numbers on the command line are parsed by parse_uint() below, never by strtol(): a student's
 *    uprobe on strtol must see the parsers' calls only.  Nothing after the "start" record calls it.
 *  - The probed functions are noinline, external and distinct, and the file is built with frame
 *    pointers and no sibling calls (Makefile), so ustack at strtol shows the job two frames up
 *    (parse_field between them, or not: at a function's entry older kernels skip the caller).
 *  - --hold is the grader's start barrier, as in kprobeme: start-up done, "start" written, then
 *    SIGUSR1 is awaited.  --linger-s keeps the process (and its memory map, from which ustack
 *    names frames) alive after the loop until SIGTERM.
 *  - Truth records are one write(2) each, in the exact form {"event": "NAME", ...}, and all of them are
 *    written at exit: during the run the records are plain numbers in memory (no snprintf, no write), so a
 *    uprobe on libc's write() or a kprobe on vfs_write sees no answer while scripts trace.  The grader
 *    stops every script before it ends uprobeme.  --notify-fd N gets one byte with no content when
 *    start-up is done and one when the loop is done: how the grader knows, without the log.
 *  - It prints nothing on success, so the answers are not given away.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

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

#define PROG XSTR(uprobeme)
#define MAX_COUNT 1000000UL
#define MAX_INTERVAL_MS 3600000UL
#define MAX_SECONDS 31536000UL
#define HOLD_MAX_S 900

static const char *const JOBS[4] = {XSTR(sync_ledger), XSTR(price_basket), XSTR(audit_trail),
				     XSTR(ship_parcel)};
static int truth_fd = -1;
static long notify_fd = -1;
static uint64_t rng_state;
static volatile long sink;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static unsigned long rng_below(unsigned long n)
{
	return n ? (unsigned long)(rng_next() % n) : 0;
}

static void truth(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (truth_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n > (int)sizeof buf - 2)
		return;
	buf[n++] = '\n';
	if (write(truth_fd, buf, n) != n)
		_exit(3);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

static void sleep_ns(long ns)
{
	struct timespec ts = {ns / 1000000000L, ns % 1000000000L};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Order ids are 6 digits and distinct within a run (while there are any left), so that a map keyed by
 * order id holds every call: a repeated id would merge two calls and fail a correct answer. */
#define ORDER_IDS 900000UL
static unsigned char order_id_used[ORDER_IDS / 8 + 1];

static long draw_order_id(unsigned long i)
{
	unsigned long v = rng_below(ORDER_IDS);

	while (i < ORDER_IDS && (order_id_used[v / 8] >> (v % 8)) & 1)
		v = rng_below(ORDER_IDS);
	order_id_used[v / 8] |= (unsigned char)(1u << (v % 8));
	return 100000 + (long)v;
}

/* ---- the functions students probe ---- */

__attribute__((noinline)) long process_order(long order_id, int qty)
{
	uint64_t h = (uint64_t)order_id * 0x9E3779B97F4A7C15ULL ^ (uint64_t)qty * 0xBF58476D1CE4E5B9ULL ^ rng_state;

	h ^= h >> 29;
	return 1000 + (long)(h % 99000);
}

static long quote_delay_ns;

__attribute__((noinline)) int fetch_quote(int seq)
{
	sleep_ns(quote_delay_ns);
	return seq * 7 + 1;
}

/* Bound to the symbol "strtol" itself: with _GNU_SOURCE, glibc 2.38 and later (Debian 13) redirect strtol()
 * to __isoc23_strtol, and a probe on libc's strtol would never fire for this program. */
extern long libc_strtol(const char *, char **, int) __asm__("strtol");

__attribute__((noinline)) long parse_field(const char *text)
{
	return libc_strtol(text, NULL, 10);
}

static long parse_value;   /* the number the parser job writes and parses */

static long parser_body(int salt)
{
	char buf[32];

	snprintf(buf, sizeof buf, "%ld", parse_value);
	return parse_field(buf) + salt;
}

__attribute__((noinline)) long sync_ledger(int parses)
{
	return parses ? parser_body(11) : (long)(parse_value * 3 + 11);
}

__attribute__((noinline)) long price_basket(int parses)
{
	return parses ? parser_body(23) : (long)(parse_value * 5 + 23);
}

__attribute__((noinline)) long audit_trail(int parses)
{
	return parses ? parser_body(37) : (long)(parse_value * 7 + 37);
}

__attribute__((noinline)) long ship_parcel(int parses)
{
	return parses ? parser_body(41) : (long)(parse_value * 11 + 41);
}

static long (*const JOB_FN[4])(int) = {sync_ledger, price_basket, audit_trail, ship_parcel};

/* ---- the run's records, kept until exit ---- */

/* One iteration of the loop, as plain numbers: formatted and written only at exit. */
struct iteration {
	long order_id, price, ns, delay_ns, value;
	int qty, slow, job, parses;
};

static char start_record[512];
static int released;
static struct iteration *iterations;
static unsigned long n_iterations, cap_iterations;

static void emit_iteration(unsigned long seq, const struct iteration *it)
{
	truth("{\"event\": \"order\", \"seq\": %lu, \"order_id\": %ld, \"qty\": %d, \"ret\": %ld}", seq,
	      it->order_id, it->qty, it->price);
	truth("{\"event\": \"quote\", \"seq\": %lu, \"ns\": %ld, \"delay_ns\": %ld, \"slow\": %s}", seq, it->ns,
	      it->delay_ns, it->slow ? "true" : "false");
	truth("{\"event\": \"job\", \"seq\": %lu, \"job\": \"%s\"}", seq, JOBS[it->job]);
	if (it->parses)
		truth("{\"event\": \"strtol\", \"seq\": %lu, \"job\": \"%s\", \"value\": %ld}", seq, JOBS[it->job],
		      it->value);
}

/* Write what is kept so far; seq numbers go on from what was written before (only if memory ran out). */
static unsigned long written_iterations;
static int start_written, released_written;

static void flush_records(void)
{
	if (!start_written) {
		truth("%s", start_record);
		start_written = 1;
	}
	if (released && !released_written) {
		truth("{\"event\": \"released\"}");
		released_written = 1;
	}
	for (unsigned long k = 0; k < n_iterations; k++)
		emit_iteration(written_iterations + k, &iterations[k]);
	written_iterations += n_iterations;
	n_iterations = 0;
}

static void keep_iteration(const struct iteration *it)
{
	if (truth_fd < 0)
		return;
	if (n_iterations == cap_iterations) {
		unsigned long want = cap_iterations ? cap_iterations * 2 : 256;
		struct iteration *more = realloc(iterations, want * sizeof(*iterations));

		if (more) {
			iterations = more;
			cap_iterations = want;
		} else {
			flush_records();
		}
	}
	if (n_iterations < cap_iterations) {
		iterations[n_iterations++] = *it;
	} else {
		emit_iteration(written_iterations, it);
		written_iterations++;
	}
}

/* One byte with no content (see the top). */
static void notify(void)
{
	ssize_t w;

	if (notify_fd < 0)
		return;
	do
		w = write((int)notify_fd, ".", 1);
	while (w < 0 && errno == EINTR);
}

/* ---- the run ---- */

static void usage_exit(const char *why)
{
	fprintf(stderr, "%s: %s (usage: %s [--count N] [--interval-ms MS] [--duration-s S] [--slow-calls K] "
		"[--seed N] [--truth-log PATH] [--hold] [--linger-s S] [--notify-fd N])\n", PROG, why, PROG);
	exit(2);
}

static int wait_signal(const sigset_t *set, long ns)
{
	struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
	int sig;

	do
		sig = sigtimedwait(set, NULL, &ts);
	while (sig == -1 && errno == EINTR);
	return sig;
}

int main(int argc, char **argv)
{
	unsigned long count = MAX_COUNT, interval_ms = 1000, duration_s = MAX_SECONDS, slow_calls = 0;
	unsigned long seed = 0, linger_s = 0, notify_arg = 0;
	int hold = 0, have_slow = 0, have_seed = 0;
	const char *log = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;

		if (strcmp(a, "--hold") == 0) {
			hold = 1;
			continue;
		}
		if (strcmp(a, "--count") == 0)
			bad = parse_uint(v, MAX_COUNT, &count) || count == 0;
		else if (strcmp(a, "--interval-ms") == 0)
			bad = parse_uint(v, MAX_INTERVAL_MS, &interval_ms);
		else if (strcmp(a, "--duration-s") == 0)
			bad = parse_uint(v, MAX_SECONDS, &duration_s);
		else if (strcmp(a, "--slow-calls") == 0)
			bad = parse_uint(v, MAX_COUNT, &slow_calls), have_slow = 1;
		else if (strcmp(a, "--seed") == 0)
			bad = parse_uint(v, UINT32_MAX, &seed), have_seed = 1;
		else if (strcmp(a, "--linger-s") == 0)
			bad = parse_uint(v, MAX_SECONDS, &linger_s);
		else if (strcmp(a, "--notify-fd") == 0)
			bad = parse_uint(v, 1023, &notify_arg), notify_fd = (long)notify_arg;
		else if (strcmp(a, "--truth-log") == 0)
			bad = !v || !*v, log = v;
		else
			usage_exit("unknown argument");
		if (bad)
			usage_exit("bad value for an option (plain non-negative integers; --count at least 1)");
		i++;
	}
	if (!have_seed)
		seed = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16);
	if (!have_slow)
		slow_calls = count / 8;
	if (slow_calls > count)
		slow_calls = count;
	rng_state = seed;
	prctl(PR_SET_NAME, PROG, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);     /* the grader may close its end of --notify-fd early */

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);

	if (log) {
		truth_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (truth_fd < 0) {
			fprintf(stderr, "%s: cannot open the truth log %s: %s\n", PROG, log, strerror(errno));
			return 2;
		}
	}

	/* Which two jobs parse, and which iterations are slow (drawn without keeping a set per call:
	 * selection sampling, k of n in order). */
	int first = (int)rng_below(4), second = (int)rng_below(3);
	second += second >= first;
	int parser[4] = {0};
	parser[first] = parser[second] = 1;
	/* Formatted now, before any probe of the run is live; written at exit with the rest. */
	snprintf(start_record, sizeof start_record,
		 "{\"event\": \"start\", \"pid\": %d, \"count\": %lu, \"slow_calls\": %lu, \"seed\": %lu, "
		 "\"jobs\": [\"%s\", \"%s\", \"%s\", \"%s\"], \"parsers\": [\"%s\", \"%s\"]}",
		 (int)getpid(), count, slow_calls, seed, JOBS[0], JOBS[1], JOBS[2], JOBS[3], JOBS[first], JOBS[second]);
	notify();

	if (hold) {
		int sig = wait_signal(&set, HOLD_MAX_S * 1000000000L);

		if (sig != SIGUSR1) {
			flush_records();
			truth("{\"event\": \"exit\", \"reason\": \"not released\"}");
			return sig == -1 ? 3 : 0;
		}
		released = 1;
	}

	long started = now_ns(), deadline = started + (long)duration_s * 1000000000L;
	unsigned long slow_left = slow_calls, i;
	int stopped = 0;

	for (i = 0; i < count && !stopped; i++) {
		struct iteration it;
		long order_id = draw_order_id(i);
		int qty = 1 + (int)rng_below(9);
		long price = process_order(order_id, qty);

		int slow = rng_below(count - i) < slow_left;
		slow_left -= slow;
		quote_delay_ns = slow ? 30000000L + (long)rng_below(30000000) : 100000L + (long)rng_below(300000);
		long t0 = now_ns();
		sink += fetch_quote((int)i);
		long took = now_ns() - t0;
		/* delay_ns bounds what probes on fetch_quote can measure from below (the sleep is inside it), ns from
		 * above (this clock encloses both probes): a call stalled by the scheduler is still bounded. */

		/* Each parser runs in the first iterations at least once; then any job. */
		int job = i == 0 ? first : i == 1 ? second : (int)rng_below(4);
		parse_value = (long)rng_below(100000);
		it = (struct iteration){.order_id = order_id, .price = price, .ns = took, .delay_ns = quote_delay_ns,
					.value = parse_value, .qty = qty, .slow = slow, .job = job, .parses = parser[job]};
		keep_iteration(&it);
		sink += JOB_FN[job](parser[job]);

		long next = started + (long)(i + 1) * (long)interval_ms * 1000000L;
		long wait = next - now_ns();
		if (next > deadline)
			wait = deadline - now_ns();
		if (wait > 0 && wait_signal(&set, wait) > 0)
			stopped = 1;
		if (now_ns() >= deadline) {
			i++;
			break;
		}
	}
	notify();
	if (!stopped && linger_s)
		wait_signal(&set, (long)linger_s * 1000000000L);
	flush_records();
	truth("{\"event\": \"done\", \"count\": %lu}", i);
	truth("{\"event\": \"exit\"}");
	return 0;
}
