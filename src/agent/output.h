/* Where records go: JSON lines to stdout or appended to a file. (The
 * collector adds shipping to `sonde server` behind the same calls.) */
#ifndef SONDE_OUTPUT_H
#define SONDE_OUTPUT_H

#include <stdint.h>

struct output;

/* path NULL or "-": stdout. Returns NULL with errno set on failure. */
struct output *output_open(const char *path);
/* Takes one record as a JSON text without newline. */
int output_write(struct output *o, const char *line);
void output_flush(struct output *o);
uint64_t output_records(const struct output *o);
void output_close(struct output *o);

#endif
