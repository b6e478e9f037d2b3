#include "lib/httpget.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

json_t *http_get_json(const char *server, const char *path,
		      const char *token, long timeout_ms)
{
	char url[2048], auth[512];
	struct buf b = { 0 };
	struct curl_slist *hdrs = NULL;
	long status = 0;
	json_t *doc = NULL;
	CURL *curl = curl_easy_init();

	if (!curl)
		return NULL;
	snprintf(url, sizeof(url), "%s%s", server, path);
	if (token && token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buf_curl_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	CURLcode cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK)
		log_err("cannot reach the server at %s: %s (is `sonde server` "
			"running? set SONDE_SERVER)",
			server, curl_easy_strerror(cc));
	else if (status != 200)
		log_err("%s answered %ld: %s", url, status, b.p ? b.p : "");
	else if (b.oom || !(doc = json_loads(b.p ? b.p : "", 0, NULL)))
		log_err("%s: not JSON", url);
	buf_free(&b);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(curl);
	return doc;
}
