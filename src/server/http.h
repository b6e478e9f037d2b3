/* Small response helpers over libmicrohttpd, shared by the server and the
 * agent's /metrics endpoint. */
#ifndef SONDE_HTTP_H
#define SONDE_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>

/* Sends body (malloc'd; ownership taken, freed by MHD). */
enum MHD_Result http_take(struct MHD_Connection *c, unsigned status,
			  const char *type, char *body, size_t len);
/* Sends {"error": msg}. */
enum MHD_Result http_error(struct MHD_Connection *c, unsigned status,
			   const char *msg);
/* Like http_error, with Retry-After: seconds. */
enum MHD_Result http_retry(struct MHD_Connection *c, unsigned status,
			   unsigned seconds, const char *msg);
/* Sends a JSON value (reference taken). */
enum MHD_Result http_json(struct MHD_Connection *c, unsigned status,
			  json_t *v);

/* "ADDR:PORT" (IPv4; empty ADDR: any) -> sockaddr. -EINVAL on junk. */
int http_parse_listen(const char *text, struct sockaddr_in *sin);

#endif
