/* Command-line options from one table per subcommand: the same table drives
 * parsing (getopt_long) and the generated --help, so help never drifts from
 * what the code accepts. */
#ifndef SONDE_OPTS_H
#define SONDE_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum opt_type {
	OPT_FLAG,     /* bool, set to true when present */
	OPT_STRING,   /* const char *, last one wins */
	OPT_INT,      /* long, decimal */
	OPT_DURATION, /* uint64_t nanoseconds: "20ms", "1.5s", "500us", "2m" */
	OPT_LIST,     /* struct strlist: repeated or comma-separated values */
};

struct strlist {
	char **items;
	int count;
};

struct opt {
	const char *name; /* long name, without "--" */
	char short_name;  /* 0 for none */
	enum opt_type type;
	void *dest;
	const char *metavar; /* shown in help for options taking a value */
	const char *help;
};

#define OPT_END { 0 }

struct cmd_spec {
	const char *path;     /* "sonde agent" */
	const char *synopsis; /* "[OPTIONS]" or "up|down|status [OPTIONS]" */
	const char *summary;  /* one line: what it does */
	const struct opt *opts;
	const char *details; /* optional text after the option list */
};

/* Parses argv[1..] against spec->opts. Options may appear anywhere before
 * "--"; positional arguments are moved, in order, to argv[0..*npos-1]
 * (argv[0] is overwritten). Returns 0 on success, 1 when --help was shown
 * (the caller should exit 0), -EINVAL after printing an error. */
int opts_parse(const struct cmd_spec *spec, int argc, char **argv, int *npos);

void opts_usage(const struct cmd_spec *spec, FILE *out);

/* "20ms" -> 20000000. Bare numbers are seconds. Returns -EINVAL on junk. */
int parse_duration_ns(const char *text, uint64_t *out_ns);

void strlist_free(struct strlist *list);

#endif
