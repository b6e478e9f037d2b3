#include "l7/jsonw.h"

#include <string.h>

void jw_init(struct jsonw *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->overflow = cap == 0;
	w->first = true;
}

/* Room for n more bytes and the final NUL? */
static bool room(struct jsonw *w, size_t n)
{
	if (w->overflow || w->cap - w->len <= n) {
		w->overflow = true;
		return false;
	}
	return true;
}

void jw_raw(struct jsonw *w, const char *s, size_t n)
{
	if (!room(w, n))
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

static void put_c(struct jsonw *w, char c)
{
	if (room(w, 1))
		w->buf[w->len++] = c;
}

/* Length of the valid UTF-8 sequence at s[0..n), 0 when invalid (overlong
 * forms, surrogates and code points past U+10FFFF are invalid, as RFC 3629
 * says and jansson checks). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t k;
	unsigned cp, min;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		k = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

void jw_strn(struct jsonw *w, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	put_c(w, '"');
	while (i < n) {
		unsigned char c = s[i];
		size_t k;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			/* Plain ASCII: copied in runs. */
			run = i;
			while (i < n && s[i] >= 0x20 && s[i] < 0x80 &&
			       s[i] != '"' && s[i] != '\\')
				i++;
			jw_raw(w, (const char *)s + run, i - run);
			continue;
		}
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			jw_raw(w, e, 2);
			i++;
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4],
				      hex[c & 15] };
			switch (c) {
			case '\n': jw_raw(w, "\\n", 2); break;
			case '\r': jw_raw(w, "\\r", 2); break;
			case '\t': jw_raw(w, "\\t", 2); break;
			default: jw_raw(w, e, 6); break;
			}
			i++;
		} else if ((k = utf8_len(s + i, n - i))) {
			jw_raw(w, (const char *)s + i, k);
			i += k;
		} else {
			jw_raw(w, "\\ufffd", 6);
			i++;
		}
	}
	put_c(w, '"');
}

void jw_str(struct jsonw *w, const char *s)
{
	jw_strn(w, s, strlen(s));
}

void jw_u64(struct jsonw *w, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	jw_raw(w, tmp + sizeof(tmp) - n, n);
}

void jw_i64(struct jsonw *w, int64_t v)
{
	if (v < 0) {
		put_c(w, '-');
		jw_u64(w, (uint64_t)0 - (uint64_t)v);
		return;
	}
	jw_u64(w, (uint64_t)v);
}

void jw_open(struct jsonw *w)
{
	put_c(w, '{');
	w->first = true;
}

void jw_close(struct jsonw *w)
{
	put_c(w, '}');
	w->first = false;
}

void jw_key(struct jsonw *w, const char *key)
{
	if (!w->first)
		put_c(w, ',');
	w->first = false;
	put_c(w, '"');
	jw_raw(w, key, strlen(key));
	jw_raw(w, "\":", 2);
}

const char *jw_text(struct jsonw *w)
{
	if (w->overflow)
		return NULL;
	w->buf[w->len] = '\0';
	return w->buf;
}
