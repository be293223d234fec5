/*
 * loader.c - bulk key loader for bench/: T threads, each doing
 * open(O_WRONLY|O_CREAT|O_TRUNC) / write / close of its own keys
 * (key i belongs to thread i % T), names PREFIX<i>, values VALSIZE bytes.
 *
 *   loader DIR PREFIX NKEYS VALSIZE THREADS
 *
 * Prints one line: "keys <n> seconds <s> keys_per_s <r>".  Exit 1 on the
 * first failed system call (with the errno on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *dir, *prefix;
static long nkeys, valsize;
static int nthreads;
static volatile int failed;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	long t = (long)arg;
	char path[4096];
	char *val = malloc(valsize > 0 ? valsize : 1);
	if (!val) {
		failed = 1;
		return NULL;
	}
	for (long i = t; i < nkeys && !failed; i += nthreads) {
		/* a value that differs per key: its number, padded with letters */
		int n = snprintf(val, valsize > 0 ? valsize : 1, "%ld:", i);
		for (long j = n; j < valsize; j++)
			val[j] = 'a' + (char)((i + j) % 26);
		snprintf(path, sizeof path, "%s/%s%ld", dir, prefix, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			fprintf(stderr, "loader: open %s: %s\n", path, strerror(errno));
			failed = 1;
			break;
		}
		for (long off = 0; off < valsize;) {
			ssize_t w = write(fd, val + off, valsize - off);
			if (w < 0) {
				fprintf(stderr, "loader: write %s: %s\n", path, strerror(errno));
				failed = 1;
				break;
			}
			off += w;
		}
		if (close(fd) != 0) {
			fprintf(stderr, "loader: close %s: %s\n", path, strerror(errno));
			failed = 1;
		}
	}
	free(val);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: loader DIR PREFIX NKEYS VALSIZE THREADS\n");
		return 2;
	}
	dir = argv[1];
	prefix = argv[2];
	nkeys = atol(argv[3]);
	valsize = atol(argv[4]);
	nthreads = atoi(argv[5]);
	if (nkeys < 0 || valsize < 0 || nthreads < 1 || nthreads > 1024) {
		fprintf(stderr, "loader: bad arguments\n");
		return 2;
	}
	pthread_t *th = calloc(nthreads, sizeof *th);
	double t0 = now();
	for (long t = 0; t < nthreads; t++)
		if (pthread_create(&th[t], NULL, run, (void *)t) != 0) {
			fprintf(stderr, "loader: pthread_create failed\n");
			return 1;
		}
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	double s = now() - t0;
	free(th);
	if (failed)
		return 1;
	printf("keys %ld seconds %.6f keys_per_s %.1f\n", nkeys, s, s > 0 ? nkeys / s : 0.0);
	return 0;
}
