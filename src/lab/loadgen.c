/* Placeholder until the load generator lands. */
#include "lab/lab.h"
#include "lib/log.h"

int lab_loadgen_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_err("sonde lab loadgen: not built yet");
	return 1;
}
