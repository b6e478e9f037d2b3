/* The lab: a Kubernetes-like cluster on one machine (see docs/lab.md).
 * Topology work is done by lab/lab.sh; the parts that need precision or
 * speed are C: the NFQUEUE delay holder and the constant-rate load generator. */
#ifndef SONDE_LAB_H
#define SONDE_LAB_H

#define LAB_RUN_DIR "/run/sonde-lab"
#define LAB_STATE_FILE LAB_RUN_DIR "/state.json"

/* `sonde lab delayer`: holds every packet of an NFQUEUE for a fixed delay. */
int lab_delayer_main(int argc, char **argv);
/* `sonde lab loadgen`: open-loop HTTP load at a constant request rate. */
int lab_loadgen_main(int argc, char **argv);
/* `sonde lab httpd`: HTTP/1.1 server with a microsecond access log. */
int lab_httpd_main(int argc, char **argv);
/* `sonde lab apiserver`: the lab's Kubernetes API stand-in (list, watch). */
int lab_apiserver_main(int argc, char **argv);

#endif
