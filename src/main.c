/* sonde: one binary, subcommands. Global options (log level) come before the
 * subcommand; each subcommand parses its own options from its table. */
#include "cmds.h"
#include "lib/log.h"
#include "lib/opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SONDE_VERSION
#define SONDE_VERSION "unknown"
#endif

struct subcommand {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct subcommand subcommands[] = {
	{ "agent", cmd_agent,
	  "run the eBPF sensors of one node and emit records as JSON lines" },
	{ "lab", cmd_lab,
	  "build and drive the lab cluster (netns nodes, pods, Bookinfo)" },
	{ "server", cmd_server,
	  "collect agents' records into a store (SQLite, ClickHouse), "
	  "query API, /metrics" },
	{ "query", cmd_query,
	  "query the server: flows, http, dns, latency by service, "
	  "workload, pod, time" },
	{ "topology", cmd_topology,
	  "service -> pod -> process -> netns -> veth -> bridge -> VXLAN -> node" },
	{ "sensors", cmd_sensors,
	  "each agent's sensors (attached, pending, failed) and plan sync" },
	{ 0 },
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: sonde [--log-level LEVEL] [-v] COMMAND [ARGS]\n\n"
		"Service-linked network observability for Kubernetes container "
		"networks.\n\nCommands:\n");
	for (const struct subcommand *s = subcommands; s->name; s++)
		fprintf(out, "  %-10s %s\n", s->name, s->summary);
	fprintf(out,
		"\nGlobal options:\n"
		"  --log-level LEVEL  error, warn, info (default), debug, trace\n"
		"  -v, --verbose      same as --log-level debug\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         show this help and exit\n"
		"\nRun 'sonde COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	int i = 1;
	const char *env_level = getenv("SONDE_LOG_LEVEL");

	if (env_level && log_level_parse(env_level) >= 0)
		log_set_level((enum log_level)log_level_parse(env_level));
	log_route_libbpf();

	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("sonde %s\n", SONDE_VERSION);
			return 0;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			log_set_level(LOG_DEBUG);
		} else if (!strcmp(a, "--log-level") && i + 1 < argc) {
			int level = log_level_parse(argv[++i]);
			if (level < 0) {
				fprintf(stderr,
					"sonde: unknown log level '%s' (error, "
					"warn, info, debug, trace)\n",
					argv[i]);
				return 2;
			}
			log_set_level((enum log_level)level);
		} else {
			fprintf(stderr, "sonde: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[i], "help")) {
		if (i + 1 < argc) {
			/* "sonde help lab" is "sonde lab --help". */
			char *help_argv[] = { argv[i + 1], "--help", NULL };
			for (const struct subcommand *s = subcommands; s->name; s++)
				if (!strcmp(s->name, argv[i + 1]))
					return s->run(2, help_argv);
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[i], "version")) {
		printf("sonde %s\n", SONDE_VERSION);
		return 0;
	}
	for (const struct subcommand *s = subcommands; s->name; s++)
		if (!strcmp(s->name, argv[i]))
			return s->run(argc - i, argv + i);

	fprintf(stderr, "sonde: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
