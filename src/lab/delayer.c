/* Placeholder until the NFQUEUE delay holder lands. */
#include "lab/lab.h"
#include "lib/log.h"

int lab_delayer_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_err("sonde lab delayer: not built yet");
	return 1;
}
