/* The conventional process_* metrics (CPU seconds, resident memory) of this
 * process, for /metrics of the server and the agent. */
#ifndef SONDE_PROCSTAT_H
#define SONDE_PROCSTAT_H

#include <stdio.h>

void procstat_write(FILE *f);

#endif
