#include "cmds.h"
#include "lib/log.h"

int cmd_agent(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_err("sonde agent: not built yet");
	return 1;
}
