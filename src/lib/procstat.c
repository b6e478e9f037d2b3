#include "lib/procstat.h"

#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

void procstat_write(FILE *f)
{
	struct rusage ru;
	long rss_pages = 0;
	FILE *statm = fopen("/proc/self/statm", "r");

	if (statm) {
		if (fscanf(statm, "%*s %ld", &rss_pages) != 1)
			rss_pages = 0;
		fclose(statm);
	}
	if (getrusage(RUSAGE_SELF, &ru))
		memset(&ru, 0, sizeof(ru));
	double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	fprintf(f,
		"# HELP process_cpu_seconds_total User and system CPU time "
		"of the process.\n# TYPE process_cpu_seconds_total counter\n"
		"process_cpu_seconds_total %.3f\n"
		"# HELP process_resident_memory_bytes Resident memory.\n"
		"# TYPE process_resident_memory_bytes gauge\n"
		"process_resident_memory_bytes %ld\n",
		cpu, rss_pages * sysconf(_SC_PAGESIZE));
}
