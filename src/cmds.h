/* Entry points of the subcommands; main.c dispatches on argv[1]. Each gets
 * argv with argv[0] = the subcommand's name. */
#ifndef SONDE_CMDS_H
#define SONDE_CMDS_H

int cmd_agent(int argc, char **argv);
int cmd_lab(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_topology(int argc, char **argv);
int cmd_sensors(int argc, char **argv);

#endif
