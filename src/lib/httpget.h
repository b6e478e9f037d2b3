/* One GET of a JSON document from `sonde server`'s API, as the CLI
 * commands that read it (sonde sensors, sonde topology --server) do. */
#ifndef SONDE_HTTPGET_H
#define SONDE_HTTPGET_H

#include <jansson.h>

/* GET server + path with the bearer token (none when NULL or empty);
 * the parsed document, or NULL after logging why (unreachable, a status
 * other than 200 with the server's answer, not JSON). */
json_t *http_get_json(const char *server, const char *path,
		      const char *token, long timeout_ms);

#endif
