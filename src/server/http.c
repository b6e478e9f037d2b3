#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum MHD_Result send_resp(struct MHD_Connection *c, unsigned status,
				 const char *type, char *body, size_t len,
				 unsigned retry_after)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE
						    : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (retry_after) {
		char v[16];
		snprintf(v, sizeof(v), "%u", retry_after);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
	}
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result http_take(struct MHD_Connection *c, unsigned status,
			  const char *type, char *body, size_t len)
{
	return send_resp(c, status, type, body, len, 0);
}

static enum MHD_Result error_resp(struct MHD_Connection *c, unsigned status,
				  unsigned retry, const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (!text)
		return MHD_NO;
	size_t len = strlen(text);
	return send_resp(c, status, "application/json", text, len, retry);
}

enum MHD_Result http_error(struct MHD_Connection *c, unsigned status,
			   const char *msg)
{
	return error_resp(c, status, 0, msg);
}

enum MHD_Result http_retry(struct MHD_Connection *c, unsigned status,
			   unsigned seconds, const char *msg)
{
	return error_resp(c, status, seconds ? seconds : 1, msg);
}

enum MHD_Result http_json(struct MHD_Connection *c, unsigned status,
			  json_t *v)
{
	char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;

	json_decref(v);
	if (!text)
		return MHD_NO;
	size_t len = strlen(text);
	return send_resp(c, status, "application/json", text, len, 0);
}

int http_parse_listen(const char *text, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = strrchr(text, ':');

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	long port = strtol(colon + 1, NULL, 10);
	if (port <= 0 || port > 65535 ||
	    inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sin->sin_addr) != 1)
		return -EINVAL;
	sin->sin_port = htons((uint16_t)port);
	return 0;
}
