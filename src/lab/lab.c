/* `sonde lab`: every lab subcommand's options are parsed here from a table
 * (one source for parsing and --help), checked, and handed in a normalized
 * form to lab/lab.sh, which does the namespace and process work. */
#include "cmds.h"
#include "lab/lab.h"
#include "lib/log.h"
#include "lib/opts.h"
#include "lib/sys.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LAB_MAX_NODES 64

static long opt_nodes = 2;
static long opt_rate = 10;
static const char *opt_node;
static bool opt_clear;
static bool opt_json;
static bool opt_no_workload;

static const struct opt up_opts[] = {
	{ "nodes", 'n', OPT_INT, &opt_nodes, "N",
	  "number of nodes, 2..64 (default 2)" },
	{ "rate", 'r', OPT_INT, &opt_rate, "RPS",
	  "load generator requests/s to productpage; 0 = none (default 10)" },
	{ "no-workload", 0, OPT_FLAG, &opt_no_workload,
	  NULL, "nodes, overlay and DNS only; no Bookinfo, no load" },
	OPT_END,
};
static const struct opt json_opts[] = {
	{ "json", 'j', OPT_FLAG, &opt_json, NULL, "machine-readable output" },
	OPT_END,
};
static const struct opt fault_opts[] = {
	{ "node", 0, OPT_STRING, &opt_node, "NODE",
	  "the node whose uplink egress is affected (required)" },
	{ "clear", 0, OPT_FLAG, &opt_clear, NULL, "remove the fault" },
	OPT_END,
};
static const struct opt load_opts[] = {
	{ "rate", 'r', OPT_INT, &opt_rate, "RPS",
	  "requests/s to productpage; 0 stops the load" },
	OPT_END,
};
static const struct opt no_opts[] = { OPT_END };

enum lab_verb { V_UP, V_DOWN, V_STATUS, V_EXEC, V_DELAY, V_LOSS, V_LOAD, V_MOVE, V_API };

struct lab_sub {
	const char *name;
	enum lab_verb verb;
	struct cmd_spec spec;
	int min_pos, max_pos; /* positionals after the verb; -1 = no limit */
};

static const struct lab_sub lab_subs[] = {
	{ "up", V_UP,
	  { "sonde lab up", "[OPTIONS]",
	    "Build the lab (nodes, overlay, DNS, Bookinfo, load) or leave a "
	    "healthy one as it is.",
	    up_opts, NULL },
	  0, 0 },
	{ "down", V_DOWN,
	  { "sonde lab down", "",
	    "Remove everything the lab made, also after a crash.", no_opts,
	    NULL },
	  0, 0 },
	{ "status", V_STATUS,
	  { "sonde lab status", "[--json]",
	    "Show nodes, pods and services, and whether each is alive.",
	    json_opts, NULL },
	  0, 0 },
	{ "exec", V_EXEC,
	  { "sonde lab exec", "POD -- CMD [ARGS...]",
	    "Run a command in a pod's network namespace and cgroup, with its "
	    "resolv.conf (like kubectl exec). POD is a pod or workload name.",
	    no_opts, NULL },
	  2, -1 },
	{ "delay", V_DELAY,
	  { "sonde lab delay", "--node NODE DELAY | --node NODE --clear",
	    "Delay every packet leaving NODE's uplink by DELAY (e.g. 20ms), "
	    "with an NFQUEUE holder (this kernel has no netem).",
	    fault_opts, NULL },
	  0, 1 },
	{ "loss", V_LOSS,
	  { "sonde lab loss", "--node NODE PERCENT | --node NODE --clear",
	    "Drop PERCENT (e.g. 1%) of the packets leaving NODE's uplink, at "
	    "random.",
	    fault_opts, NULL },
	  0, 1 },
	{ "load", V_LOAD,
	  { "sonde lab load", "--rate RPS",
	    "Change the load generator's request rate to productpage.",
	    load_opts, NULL },
	  0, 0 },
	{ "move", V_MOVE,
	  { "sonde lab move", "POD NODE",
	    "Reschedule a pod to NODE: the pod is deleted, a new one (new "
	    "name, uid and IP) starts on NODE and becomes Ready.",
	    no_opts, NULL },
	  2, 2 },
	{ "api", V_API,
	  { "sonde lab api", "start|stop|restart|drop-watches|status",
	    "Drive the Kubernetes API stand-in (https://127.0.0.1:6443, "
	    "kubeconfig /run/sonde-lab/kubeconfig).",
	    no_opts, NULL },
	  0, 1 },
	{ 0 },
};

static void lab_usage(FILE *out)
{
	fprintf(out, "Usage: sonde lab COMMAND [OPTIONS]\n\n"
		     "A Kubernetes-like cluster of network namespaces carrying "
		     "Bookinfo traffic.\n\nCommands:\n");
	for (const struct lab_sub *s = lab_subs; s->name; s++)
		fprintf(out, "  %-8s %s\n", s->name, s->spec.summary);
	fprintf(out, "\nInternal (run by the lab inside its namespaces):\n"
		     "  delayer  hold NFQUEUE packets for a fixed delay\n"
		     "  loadgen  constant-rate HTTP load generator\n"
		     "  httpd    HTTP server with a microsecond access log\n"
		     "  apiserver  the Kubernetes API stand-in (list, watch)\n"
		     "\nRun 'sonde lab COMMAND --help' for a command's options.\n");
}

/* The lab scripts live in lab/ next to the repository's ./sonde (the binary
 * itself is in build/<variant>/), or where an install put them. */
static int find_lab_dir(char *buf, size_t len)
{
	const char *env = getenv("SONDE_LAB_DIR");
	char exe_dir[PATH_MAX];
	char probe[PATH_MAX + 32];

	if (env) {
		snprintf(buf, len, "%s", env);
		return 0;
	}
	if (sys_exe_dir(exe_dir, sizeof(exe_dir)) == 0) {
		static const char *const ups[] = { "", "/..", "/../.." };
		for (size_t i = 0; i < sizeof(ups) / sizeof(ups[0]); i++) {
			snprintf(probe, sizeof(probe), "%s%s/lab/lab.sh",
				 exe_dir, ups[i]);
			if (access(probe, R_OK) == 0) {
				char *resolved = realpath(probe, NULL);
				if (!resolved)
					break;
				*strrchr(resolved, '/') = '\0';
				snprintf(buf, len, "%s", resolved);
				free(resolved);
				return 0;
			}
		}
	}
	if (access("/usr/share/sonde/lab/lab.sh", R_OK) == 0) {
		snprintf(buf, len, "/usr/share/sonde/lab");
		return 0;
	}
	log_err("cannot find lab/lab.sh next to the sonde binary; set "
		"SONDE_LAB_DIR to the repository's lab/ directory");
	return -ENOENT;
}

static int check_lab_tools(void)
{
	static const char *const tools[][2] = {
		{ "ip", "iproute2" },
		{ "iptables-legacy", "iptables" },
		{ "nsenter", "util-linux" },
		{ "jq", "jq" },
		{ "nginx", "nginx-light" },
		{ "dnsmasq", "dnsmasq-base" },
		{ "bash", "bash" },
		{ "curl", "curl" },     /* readiness probes, lab tests */
		{ "dig", "bind9-dnsutils" },
		{ "flock", "util-linux" },
	};
	int rc = 0;

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (sys_require_tool(tools[i][0], tools[i][1]))
			rc = -ENOENT;
	return rc;
}

/* "1%", "1", "0.5%" -> probability "0.010000" for iptables' statistic match. */
static int parse_percent(const char *text, char *out, size_t len)
{
	char *end;

	errno = 0;
	double pct = strtod(text, &end);
	if (end == text || errno || (*end && strcmp(end, "%")) || pct <= 0 ||
	    pct > 100)
		return -EINVAL;
	snprintf(out, len, "%.6f", pct / 100.0);
	return 0;
}

static int run_script(const char *verb, char **extra, int nextra)
{
	char lab_dir[PATH_MAX], script[PATH_MAX + 16], exe[PATH_MAX];
	char cg2[PATH_MAX];
	ssize_t n;

	if (find_lab_dir(lab_dir, sizeof(lab_dir)) ||
	    sys_cgroup2_mount(cg2, sizeof(cg2)))
		return 1;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0) {
		log_err("readlink /proc/self/exe: %s", strerror(errno));
		return 1;
	}
	exe[n] = '\0';
	snprintf(script, sizeof(script), "%s/lab.sh", lab_dir);
	setenv("SONDE_BIN", exe, 1);
	setenv("SONDE_LAB_DIR", lab_dir, 1);
	setenv("SONDE_CGROUP2", cg2, 1);

	char **argv = calloc((size_t)nextra + 4, sizeof(char *));
	if (!argv)
		return 1;
	argv[0] = "bash";
	argv[1] = script;
	argv[2] = (char *)verb;
	for (int i = 0; i < nextra; i++)
		argv[3 + i] = extra[i];
	execvp("bash", argv);
	log_err("cannot run %s: %s", script, strerror(errno));
	free(argv);
	return 1;
}

int cmd_lab(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		lab_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "delayer"))
		return lab_delayer_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "loadgen"))
		return lab_loadgen_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "httpd"))
		return lab_httpd_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "apiserver"))
		return lab_apiserver_main(argc - 1, argv + 1);

	const struct lab_sub *sub = NULL;
	for (const struct lab_sub *s = lab_subs; s->name; s++)
		if (!strcmp(s->name, argv[1]))
			sub = s;
	if (!sub) {
		fprintf(stderr, "sonde lab: unknown command '%s'\n", argv[1]);
		lab_usage(stderr);
		return 2;
	}

	int npos = 0;
	int rc = opts_parse(&sub->spec, argc - 1, argv + 1, &npos);
	if (rc)
		return rc > 0 ? 0 : 2;
	char **pos = argv + 1;
	if (npos < sub->min_pos || (sub->max_pos >= 0 && npos > sub->max_pos)) {
		fprintf(stderr, "Usage: %s %s\n", sub->spec.path,
			sub->spec.synopsis);
		return 2;
	}
	if (sys_require_root("sonde lab") || check_lab_tools())
		return 1;

	char a[3][64];
	char *extra[3] = { a[0], a[1], a[2] };
	switch (sub->verb) {
	case V_UP:
		if (opt_nodes < 2 || opt_nodes > LAB_MAX_NODES) {
			log_err("--nodes must be between 2 and %d (Bookinfo "
				"places reviews-v2 and ratings on different "
				"nodes)",
				LAB_MAX_NODES);
			return 2;
		}
		if (opt_rate < 0 || opt_rate > 100000) {
			log_err("--rate must be between 0 and 100000");
			return 2;
		}
		snprintf(a[0], sizeof(a[0]), "%ld", opt_nodes);
		snprintf(a[1], sizeof(a[1]), "%ld", opt_no_workload ? 0 : opt_rate);
		snprintf(a[2], sizeof(a[2]), "%s",
			 opt_no_workload ? "none" : "bookinfo");
		return run_script("up", extra, 3);
	case V_DOWN:
		return run_script("down", NULL, 0);
	case V_STATUS:
		if (opt_json)
			snprintf(a[0], sizeof(a[0]), "--json");
		return run_script("status", extra, opt_json ? 1 : 0);
	case V_EXEC:
		return run_script("exec", pos, npos);
	case V_MOVE:
		return run_script("move", pos, npos);
	case V_API:
		return run_script("api", pos, npos);
	case V_LOAD:
		if (opt_rate < 0 || opt_rate > 100000) {
			log_err("--rate must be between 0 and 100000");
			return 2;
		}
		snprintf(a[0], sizeof(a[0]), "%ld", opt_rate);
		return run_script("load", extra, 1);
	case V_DELAY:
	case V_LOSS:
		if (!opt_node) {
			log_err("%s needs --node NODE", sub->spec.path);
			return 2;
		}
		snprintf(a[0], sizeof(a[0]), "%s", opt_node);
		if (opt_clear) {
			snprintf(a[1], sizeof(a[1]), "clear");
		} else if (npos != 1) {
			fprintf(stderr, "Usage: %s %s\n", sub->spec.path,
				sub->spec.synopsis);
			return 2;
		} else if (sub->verb == V_DELAY) {
			uint64_t ns;
			if (parse_duration_ns(pos[0], &ns) || ns == 0 ||
			    ns > 10ULL * 1000000000ULL) {
				log_err("delay must be a duration between 1us "
					"and 10s such as 20ms, not '%s'",
					pos[0]);
				return 2;
			}
			snprintf(a[1], sizeof(a[1]), "%llu",
				 (unsigned long long)(ns / 1000));
		} else if (parse_percent(pos[0], a[1], sizeof(a[1]))) {
			log_err("loss must be a percentage in (0, 100] such as "
				"1%%, not '%s'",
				pos[0]);
			return 2;
		}
		return run_script(sub->verb == V_DELAY ? "delay" : "loss",
				  extra, 2);
	}
	return 2;
}
