#include "lib/opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define HELP_COLUMN 28

static int count_opts(const struct opt *opts)
{
	int n = 0;

	while (opts && opts[n].name)
		n++;
	return n;
}

void opts_usage(const struct cmd_spec *spec, FILE *out)
{
	fprintf(out, "Usage: %s %s\n\n%s\n", spec->path, spec->synopsis,
		spec->summary);
	fprintf(out, "\nOptions:\n");
	for (const struct opt *o = spec->opts; o && o->name; o++) {
		char left[128];
		int n;

		if (o->short_name)
			n = snprintf(left, sizeof(left), "  -%c, --%s",
				     o->short_name, o->name);
		else
			n = snprintf(left, sizeof(left), "      --%s", o->name);
		if (o->type != OPT_FLAG && n > 0 && (size_t)n < sizeof(left))
			snprintf(left + n, sizeof(left) - (size_t)n, " %s",
				 o->metavar ? o->metavar : "VALUE");
		if (strlen(left) + 2 > HELP_COLUMN)
			fprintf(out, "%s\n%*s%s\n", left, HELP_COLUMN, "",
				o->help);
		else
			fprintf(out, "%-*s%s\n", HELP_COLUMN, left, o->help);
	}
	fprintf(out, "%-*s%s\n", HELP_COLUMN, "  -h, --help",
		"show this help and exit");
	if (spec->details)
		fprintf(out, "\n%s\n", spec->details);
}

int parse_duration_ns(const char *text, uint64_t *out_ns)
{
	static const struct {
		const char *suffix;
		double scale;
	} units[] = {
		{ "ns", 1 },	    { "us", 1e3 },   { "ms", 1e6 },
		{ "s", 1e9 },	    { "m", 60e9 },   { "h", 3600e9 },
		{ "", 1e9 },
	};
	char *end;

	errno = 0;
	double value = strtod(text, &end);
	if (end == text || errno || value < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			double ns = value * units[i].scale;
			if (ns > 1.8e19)
				return -EINVAL;
			*out_ns = (uint64_t)(ns + 0.5);
			return 0;
		}
	}
	return -EINVAL;
}

static int strlist_add_split(struct strlist *list, const char *value)
{
	char *copy = strdup(value);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char **grown = realloc(list->items, sizeof(char *) *
						    (size_t)(list->count + 1));
		if (!grown) {
			free(copy);
			return -ENOMEM;
		}
		list->items = grown;
		list->items[list->count] = strdup(tok);
		if (!list->items[list->count]) {
			free(copy);
			return -ENOMEM;
		}
		list->count++;
	}
	free(copy);
	return 0;
}

void strlist_free(struct strlist *list)
{
	for (int i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

static int store_value(const struct cmd_spec *spec, const struct opt *o,
		       const char *value)
{
	char *end;

	switch (o->type) {
	case OPT_FLAG:
		*(bool *)o->dest = true;
		return 0;
	case OPT_STRING:
		*(const char **)o->dest = value;
		return 0;
	case OPT_INT:
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end) {
			fprintf(stderr, "%s: --%s wants a number, not '%s'\n",
				spec->path, o->name, value);
			return -EINVAL;
		}
		*(long *)o->dest = v;
		return 0;
	case OPT_DURATION:
		if (parse_duration_ns(value, o->dest)) {
			fprintf(stderr,
				"%s: --%s wants a duration such as 20ms, 1s or "
				"500us, not '%s'\n",
				spec->path, o->name, value);
			return -EINVAL;
		}
		return 0;
	case OPT_LIST:
		return strlist_add_split(o->dest, value);
	}
	return -EINVAL;
}

int opts_parse(const struct cmd_spec *spec, int argc, char **argv, int *npos)
{
	int n = count_opts(spec->opts);
	struct option *longopts = calloc((size_t)n + 2, sizeof(*longopts));
	char shortopts[128];
	size_t sl = 0;
	int rc = 0;

	if (!longopts)
		return -ENOMEM;
	/* '-': positionals come back in order as code 1, so options may appear
	 * anywhere, yet "--" ends option parsing and `lab exec POD -- cmd -x`
	 * keeps cmd's own options. ':': a missing argument is reported as ':'. */
	shortopts[sl++] = '-';
	shortopts[sl++] = ':';
	shortopts[sl++] = 'h';
	for (int i = 0; i < n; i++) {
		const struct opt *o = &spec->opts[i];

		longopts[i].name = o->name;
		longopts[i].has_arg =
			o->type == OPT_FLAG ? no_argument : required_argument;
		longopts[i].val = 256 + i;
		if (o->short_name && sl + 3 < sizeof(shortopts)) {
			shortopts[sl++] = o->short_name;
			if (o->type != OPT_FLAG)
				shortopts[sl++] = ':';
		}
	}
	shortopts[sl] = '\0';
	longopts[n].name = "help";
	longopts[n].val = 'h';

	int pos = 0;
	optind = 1;
	opterr = 0;
	for (;;) {
		int c = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (c == -1)
			break;
		if (c == 1) { /* positional, in order */
			argv[pos++] = optarg;
			continue;
		}
		if (c == 'h') {
			opts_usage(spec, stdout);
			rc = 1;
			goto out;
		}
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];
			fprintf(stderr, "%s: %s '%s'\n", spec->path,
				c == ':' ? "missing value for" : "unknown option",
				bad);
			fprintf(stderr, "Try '%s --help'.\n", spec->path);
			rc = -EINVAL;
			goto out;
		}
		const struct opt *o = NULL;
		if (c >= 256)
			o = &spec->opts[c - 256];
		else
			for (int i = 0; i < n; i++)
				if (spec->opts[i].short_name == c)
					o = &spec->opts[i];
		if (!o) {
			rc = -EINVAL;
			goto out;
		}
		rc = store_value(spec, o, optarg);
		if (rc)
			goto out;
	}
	/* Whatever follows "--" (or was left) is positional, verbatim. */
	for (int i = optind; i < argc; i++)
		argv[pos++] = argv[i];
	*npos = pos;
out:
	free(longopts);
	return rc;
}
