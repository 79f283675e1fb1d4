/*
 * usdtme: the workload of the bpfhol USDT lab.
 *
 * A small till: each iteration it takes an order (USDT probe till:order_taken(order_id, qty)), takes a
 * payment from one of the run's customers (till:payment_made(customer, amount_cents): a string and a number)
 * and now and then restocks a shelf (till:restock(item, units)) and reports its queue (till:queue_depth(n)).
 * Order ids, customers and amounts are drawn from --seed, so only a script that watched the run knows them;
 * the grader compares what students print with the ground-truth log (--truth-log), labs/usdt/checks.py.
 *
 *   usdtme [--count N] [--interval-ms MS] [--duration-s S] [--customers K] [--seed N]
 *          [--truth-log PATH] [--hold] [--linger-s S] [--notify-fd N]
 *
 * Notes for maintainers:
 *  - The probes are STAP_PROBEn from <sys/sdt.h> (Debian: systemtap-sdt-dev): each is one nop in the code
 *    and a note in the ELF section .note.stapsdt saying where the nop is and where each argument lives
 *    (a register or memory operand).  bpftrace reads the note and puts a uprobe on the nop.
 *  - queue_depth is guarded by its semaphore (till_queue_depth_semaphore, in .probes): the program computes
 *    its argument only while a tracer has raised it (QUEUE_DEPTH_ENABLED()).
 *  - The contract (docs/workload-contract.md) as uprobeme keeps it: --hold is the start barrier (SIGUSR1),
 *    records are plain numbers in memory during the run and written at exit, one write(2) each;
 *    --notify-fd gets one byte when start-up is done and one when the loop is done; nothing printed.
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
#include <sys/sdt.h>

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

#define PROG XSTR(usdtme)
#define MAX_COUNT 1000000UL
#define MAX_INTERVAL_MS 3600000UL
#define MAX_SECONDS 31536000UL
#define HOLD_MAX_S 900

/* The customers a run's payments come from: each run draws 3 to 5 of them (--customers). */
static const char *const CUSTOMERS[8] = {"ada", "brook", "cyrus", "dagny", "emeka", "freya", "gulnar", "hiro"};
/* What a restock names (only the text's examples read the restock probe). */
static const char *const ITEMS[4] = {"flour", "lentils", "olive_oil", "rice"};
static int truth_fd = -1;
static long notify_fd = -1;
static uint64_t rng_state;

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


/* ---- the probes ---- */

/* Built with _SDT_HAS_SEMAPHORES (Makefile), every probe's note names a semaphore, a counter in the section
 * .probes that a tracer attaching the probe raises (the kernel, or bpftrace through /proc/PID/mem), so the
 * program can tell someone is listening.  Only queue_depth's is read: its argument is computed only then.
 * SEMAPHORE(p, n) spells p_n_semaphore after a variant's renaming, as sdt.h does. */
#define SEMAPHORE_(p, n) p##_##n##_semaphore
#define SEMAPHORE(p, n) SEMAPHORE_(p, n)
#define DECLARE_SEMAPHORE(p, n) \
	__extension__ unsigned short SEMAPHORE(p, n) __attribute__((unused, section(".probes")))
DECLARE_SEMAPHORE(till, order_taken);
DECLARE_SEMAPHORE(till, payment_made);
DECLARE_SEMAPHORE(till, restock);
DECLARE_SEMAPHORE(till, queue_depth);
#define QUEUE_DEPTH_ENABLED() __builtin_expect(SEMAPHORE(till, queue_depth), 0)

static long queue_len;

/* Every probe argument is handed over in a register: left to itself the compiler may describe one as a
 * RIP-relative memory operand (queue_len(%rip)), which bpftrace 0.17 reads wrongly (measured: garbage). */
#define IN_REGISTER(v) __asm__ volatile("" : "+r"(v))

static long queue_depth_now(void)
{
	/* Stands for work only worth doing for a tracer. */
	return queue_len;
}

/* ---- the run's records, kept until exit ---- */

struct iteration {
	long order_id, amount;
	int qty, customer;
};

static char start_record[512];
static int released;
static struct iteration *iterations;
static unsigned long n_iterations, cap_iterations;

static void emit_iteration(unsigned long seq, const struct iteration *it)
{
	truth("{\"event\": \"order\", \"seq\": %lu, \"order_id\": %ld, \"qty\": %d}", seq, it->order_id, it->qty);
	truth("{\"event\": \"payment\", \"seq\": %lu, \"customer\": \"%s\", \"amount\": %ld}", seq,
	      CUSTOMERS[it->customer], it->amount);
}

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
	fprintf(stderr, "%s: %s (usage: %s [--count N] [--interval-ms MS] [--duration-s S] [--customers K] "
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
	unsigned long count = MAX_COUNT, interval_ms = 1000, duration_s = MAX_SECONDS, n_customers = 4;
	unsigned long seed = 0, linger_s = 0, notify_arg = 0;
	int hold = 0, have_seed = 0;
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
		else if (strcmp(a, "--customers") == 0)
			bad = parse_uint(v, 8, &n_customers) || n_customers < 2;
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
			usage_exit("bad value for an option (plain non-negative integers; --count at least 1, "
				   "--customers 2 to 8)");
		i++;
	}
	if (!have_seed)
		seed = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16);
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

	/* The run's customers: n_customers of the 8, drawn in order (selection sampling). */
	int customers[8], k = 0;
	for (int c = 0; c < 8 && k < (int)n_customers; c++)
		if (rng_below(8 - c) < n_customers - k)
			customers[k++] = c;
	snprintf(start_record, sizeof start_record,
		 "{\"event\": \"start\", \"pid\": %d, \"count\": %lu, \"seed\": %lu, \"customers\": %d}",
		 (int)getpid(), count, seed, k);
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
	unsigned long i;
	int stopped = 0;

	for (i = 0; i < count && !stopped; i++) {
		struct iteration it;
		long order_id = draw_order_id(i);
		int qty = 1 + (int)rng_below(9);
		/* Each of the run's customers pays at least once (the first k iterations), then any of them. */
		int customer = customers[i < (unsigned long)k ? (int)i : (int)rng_below(k)];
		long amount = 100 + (long)rng_below(99900);

		const char *who = CUSTOMERS[customer];

		IN_REGISTER(order_id);
		IN_REGISTER(qty);
		STAP_PROBE2(till, order_taken, order_id, qty);
		queue_len += qty;
		IN_REGISTER(who);
		IN_REGISTER(amount);
		STAP_PROBE2(till, payment_made, who, amount);
		queue_len -= qty > queue_len ? queue_len : qty / 2 + 1;
		if (i % 3 == 2) {
			const char *item = ITEMS[rng_below(4)];
			long units = 10 + (long)rng_below(90);

			IN_REGISTER(item);
			IN_REGISTER(units);
			STAP_PROBE2(till, restock, item, units);
		}
		if (QUEUE_DEPTH_ENABLED()) {
			long depth = queue_depth_now();

			IN_REGISTER(depth);
			STAP_PROBE1(till, queue_depth, depth);
		}
		it = (struct iteration){.order_id = order_id, .amount = amount, .qty = qty, .customer = customer};
		keep_iteration(&it);

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
