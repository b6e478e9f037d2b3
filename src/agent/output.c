#include "agent/output.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct output {
	FILE *f;
	uint64_t records;
};

struct output *output_open(const char *path)
{
	struct output *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	if (!path || !strcmp(path, "-")) {
		o->f = stdout;
		return o;
	}
	/* Append: a restarted agent must not erase what it wrote before. */
	o->f = fopen(path, "a");
	if (!o->f) {
		int err = errno;
		free(o);
		errno = err;
		return NULL;
	}
	return o;
}

int output_write(struct output *o, const char *line)
{
	if (fputs(line, o->f) < 0 || fputc('\n', o->f) < 0)
		return -EIO;
	o->records++;
	return 0;
}

void output_flush(struct output *o)
{
	fflush(o->f);
}

uint64_t output_records(const struct output *o)
{
	return o->records;
}

void output_close(struct output *o)
{
	if (!o)
		return;
	fflush(o->f);
	if (o->f != stdout)
		fclose(o->f);
	free(o);
}
