/* The common case of accesslog.scan_text, compiled: S3 server access log lines read where
 * they lie in a decoded chunk, without the regex engine and the interpreter per line.
 *
 * Why it exists: `usage` over a million log lines spent most of its time matching each
 * line with accesslog._SCAN (the regex engine walks every one of a line's ~800 characters)
 * and running the Python around the match (docs/performance.md, issue 15).
 *
 * What it may do, and what it must not: it reads a line only when the line is in the plain
 * form that _SCAN matches and everything after the match is certain (the time converts, the
 * address is an address, the link id needs no percent-decoding). For such a line it gives
 * exactly what scan_text's Python gives. Every other line, including everything odd an
 * outsider can write into a log, it leaves untouched: it stops before the line and returns,
 * and scan_text reads that line the Python way (which is the oracle the tests compare this
 * with). So being stricter than the pattern only costs speed; accepting a line the pattern
 * refuses, or reading one differently, would be a bug, and tests/receipts/test_linescan.py
 * looks for both.
 *
 * Memory safety: the text is never written; every index is checked against the line's end
 * before it is read; no buffer is allocated but the Python objects handed back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define NAME "x-sharebatch-id="
#define NAME_LENGTH 16
/* accesslog._DIGITS: the longest number the counted fields may hold. */
#define DIGITS 20

typedef const Py_UCS1 *Text;

static int is_digit(Py_UCS1 c) { return c >= '0' && c <= '9'; }

static int is_hex(Py_UCS1 c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The end of the run of characters other than `stop` from p (at most e). */
static Py_ssize_t upto(Text s, Py_ssize_t p, Py_ssize_t e, Py_UCS1 stop)
{
    const void *found = memchr(s + p, stop, (size_t)(e - p));
    return found == NULL ? e : (Py_ssize_t)((Text)found - s);
}

/* `(?:[0-9]++|-) ` at p, a number of any length: the offset after its space, or -1. */
static Py_ssize_t number_field(Text s, Py_ssize_t p, Py_ssize_t e)
{
    Py_ssize_t q = p;
    if (q < e && s[q] == '-') {
        q++;
    } else {
        while (q < e && is_digit(s[q])) q++;
        if (q == p) return -1;
    }
    return (q < e && s[q] == ' ') ? q + 1 : -1;
}

/* accesslog._STATUS_FIELDS at p: a space, then six fields that read as the status fields,
 * then a quote or a dash. Bounded by e, as the pattern is by the line's end. */
static int status_fields_at(Text s, Py_ssize_t p, Py_ssize_t e)
{
    if (p >= e || s[p] != ' ') return 0;
    p++;
    p = number_field(s, p, e);
    if (p < 0) return 0;
    Py_ssize_t q = upto(s, p, e, ' ');
    if (q == p || q >= e) return 0;
    p = q + 1;
    for (int n = 0; n < 4; n++) {
        p = number_field(s, p, e);
        if (p < 0) return 0;
    }
    return p < e && (s[p] == '"' || s[p] == '-');
}

/* `[0-9]{1,20}+|-` followed by a space: the field's span in *a, *b (b == a + 1 and s[a] ==
 * '-' for a dash) and the offset after the space, or -1. */
static Py_ssize_t counted_field(Text s, Py_ssize_t p, Py_ssize_t e, Py_ssize_t *a, Py_ssize_t *b)
{
    Py_ssize_t q = p;
    if (q < e && s[q] == '-') {
        q++;
    } else {
        while (q < e && q - p < DIGITS && is_digit(s[q])) q++;
        if (q == p) return -1;
    }
    if (q >= e || s[q] != ' ') return -1;
    *a = p;
    *b = q;
    return q + 1;
}

/* One octet of accesslog._OCTET, the whole of [p, q): 0 to 255, no leading zero. */
static int octet(Text s, Py_ssize_t p, Py_ssize_t q)
{
    Py_ssize_t n = q - p;
    if (n < 1 || n > 3) return 0;
    for (Py_ssize_t i = p; i < q; i++)
        if (!is_digit(s[i])) return 0;
    if (n > 1 && s[p] == '0') return 0;
    int value = 0;
    for (Py_ssize_t i = p; i < q; i++) value = value * 10 + (s[i] - '0');
    return value <= 255;
}

/* Whether [p, q) is accesslog._IPV4_TEXT, whole. */
static int ipv4(Text s, Py_ssize_t p, Py_ssize_t q)
{
    for (int n = 0; n < 4; n++) {
        Py_ssize_t dot = n < 3 ? upto(s, p, q, '.') : q;
        if (n < 3 && dot >= q) return 0;
        if (!octet(s, p, dot)) return 0;
        p = dot + 1;
    }
    return 1;
}

/* Whether [p, q) is accesslog._IPV6_TEXT, whole: RFC 3986's IPv6address. Groups of one to
 * four hex digits; "::" at most once, standing for at least one group; the last 32 bits
 * perhaps an IPv4 address; eight groups in all without "::", at most seven with it. */
static int ipv6(Text s, Py_ssize_t p, Py_ssize_t q)
{
    int groups = 0, compressed = 0;
    if (q - p >= 2 && s[p] == ':' && s[p + 1] == ':') {
        compressed = 1;
        p += 2;
        if (p == q) return 1;
    } else if (p < q && s[p] == ':') {
        return 0;
    }
    while (p < q) {
        Py_ssize_t r = p;
        while (r < q && r - p < 5 && is_hex(s[r])) r++;
        if (r < q && s[r] == '.') {
            /* The IPv4 tail: the rest of the text, in place of the last two groups. */
            if (!ipv4(s, p, q)) return 0;
            groups += 2;
            p = q;
            break;
        }
        if (r == p || r - p > 4) return 0;
        groups++;
        p = r;
        if (p == q) break;
        if (s[p] != ':') return 0;
        p++;
        if (p < q && s[p] == ':') {
            if (compressed) return 0;
            compressed = 1;
            p++;
            if (p == q) break;
        } else if (p == q) {
            return 0; /* a single trailing colon */
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

/* The remote address field [p, q): 1 when _SCAN's and scan_text's checks accept it. */
static int address(Text s, Py_ssize_t p, Py_ssize_t q)
{
    if (q - p == 1 && s[p] == '-') return 1;
    if (memchr(s + p, ':', (size_t)(q - p)) == NULL) return ipv4(s, p, q);
    for (Py_ssize_t i = p; i < q; i++)
        if (!(is_hex(s[i]) || s[i] == ':' || s[i] == '.')) return 0;
    return ipv6(s, p, q);
}

/* A quoted field with no quote inside, neither quote followed by status fields
 * (`"(?!status)[^"]*+"(?!status)`), at p: the text's span in *a, *b, the offset after the
 * closing quote; or -1. */
static Py_ssize_t free_field(Text s, Py_ssize_t p, Py_ssize_t e, Py_ssize_t *a, Py_ssize_t *b)
{
    if (p >= e || s[p] != '"') return -1;
    if (status_fields_at(s, p + 1, e)) return -1;
    Py_ssize_t q = upto(s, p + 1, e, '"');
    if (q >= e) return -1;
    if (status_fields_at(s, q + 1, e)) return -1;
    *a = p + 1;
    *b = q;
    return q + 1;
}

typedef struct {
    Py_ssize_t bucket[2], stamp[2], ip[2], operation[2], key[2], uri[2];
    Py_ssize_t status[2], sent[2], size[2], agent[2];
    int has_uri, has_agent;
} Fields;

/* _SCAN over the line [p, e): 1 and the fields when it matches, else 0. */
static int match_line(Text s, Py_ssize_t p, Py_ssize_t e, Fields *f)
{
    Py_ssize_t q;
    /* bucket_owner, then bucket */
    q = upto(s, p, e, ' ');
    if (q == p || q >= e) return 0;
    p = q + 1;
    q = upto(s, p, e, ' ');
    if (q == p || q >= e) return 0;
    f->bucket[0] = p;
    f->bucket[1] = q;
    p = q + 1;
    /* [time] */
    if (p >= e || s[p] != '[') return 0;
    p++;
    q = upto(s, p, e, ']');
    if (q == p || q + 1 >= e || s[q + 1] != ' ') return 0;
    f->stamp[0] = p;
    f->stamp[1] = q;
    p = q + 2;
    /* remote_ip */
    q = upto(s, p, e, ' ');
    if (q == p || q >= e || !address(s, p, q)) return 0;
    f->ip[0] = p;
    f->ip[1] = q;
    p = q + 1;
    /* requester, request_id, operation, key */
    for (int n = 0; n < 4; n++) {
        q = upto(s, p, e, ' ');
        if (q == p || q >= e) return 0;
        if (n == 2) {
            f->operation[0] = p;
            f->operation[1] = q;
        } else if (n == 3) {
            f->key[0] = p;
            f->key[1] = q;
        }
        p = q + 1;
    }
    /* "request_uri" or - */
    if (p < e && s[p] == '"') {
        q = upto(s, p + 1, e, '"');
        if (q >= e) return 0;
        f->has_uri = 1;
        f->uri[0] = p + 1;
        f->uri[1] = q;
        p = q + 1;
    } else if (p < e && s[p] == '-') {
        f->has_uri = 0;
        p++;
    } else {
        return 0;
    }
    if (p >= e || s[p] != ' ') return 0;
    p++;
    /* http_status, error_code, bytes_sent, object_size */
    p = counted_field(s, p, e, &f->status[0], &f->status[1]);
    if (p < 0) return 0;
    q = p;
    while (q < e && s[q] != ' ' && s[q] != '"') q++;
    if (q == p || q >= e || s[q] != ' ') return 0;
    p = q + 1;
    p = counted_field(s, p, e, &f->sent[0], &f->sent[1]);
    if (p < 0) return 0;
    p = counted_field(s, p, e, &f->size[0], &f->size[1]);
    if (p < 0) return 0;
    /* total_time, turnaround_time */
    p = number_field(s, p, e);
    if (p < 0) return 0;
    p = number_field(s, p, e);
    if (p < 0) return 0;
    /* "referer" or - */
    Py_ssize_t a, b;
    if (p < e && s[p] == '-') {
        p++;
    } else {
        p = free_field(s, p, e, &a, &b);
        if (p < 0) return 0;
    }
    if (p >= e || s[p] != ' ') return 0;
    p++;
    /* "user_agent" or - */
    if (p < e && s[p] == '-') {
        f->has_agent = 0;
        p++;
    } else {
        p = free_field(s, p, e, &f->agent[0], &f->agent[1]);
        if (p < 0) return 0;
        f->has_agent = 1;
    }
    /* (?= |\r?\Z) then no quote to the end */
    if (p < e) {
        if (s[p] == '\r') {
            if (p + 1 != e) return 0;
        } else if (s[p] != ' ') {
            return 0;
        }
        if (memchr(s + p, '"', (size_t)(e - p)) != NULL) return 0;
    }
    return 1;
}

/* The x-sharebatch-id of the Request-URI [p, e), as scan_text finds it. Returns 1 with its
 * span in *a, *b; 0 when the record carries none; -1 when only the Python can say (the id,
 * or a name that may be the parameter's, is percent-encoded). */
static int link_id(Text s, Py_ssize_t p, Py_ssize_t e, Py_ssize_t *a, Py_ssize_t *b)
{
    Py_ssize_t query = upto(s, p, e, '?');
    int percent = memchr(s + p, '%', (size_t)(e - p)) != NULL;
    if (query < e) {
        for (Py_ssize_t at = query + 1; e - at >= NAME_LENGTH; at++) {
            const void *found = memchr(s + at, 'x', (size_t)(e - at - NAME_LENGTH + 1));
            if (found == NULL) break;
            at = (Py_ssize_t)((Text)found - s);
            if (memcmp(s + at, NAME, NAME_LENGTH) != 0) continue;
            if (s[at - 1] != '?' && s[at - 1] != '&') continue;
            Py_ssize_t v = at + NAME_LENGTH, w = v;
            while (w < e && s[w] != '&' && s[w] != ' ') w++;
            if (memchr(s + v, '%', (size_t)(w - v)) != NULL) return -1;
            *a = v;
            *b = w;
            return 1;
        }
    }
    if (!percent || query >= e) return 0;
    /* accesslog.link_id_of's encoded case: a pair of the query (up to the first space)
     * whose name holds a "%". None holds one: no id. */
    Py_ssize_t end = upto(s, query + 1, e, ' ');
    Py_ssize_t pair = query + 1;
    while (pair <= end) {
        Py_ssize_t stop = upto(s, pair, end, '&');
        Py_ssize_t equals = upto(s, pair, stop, '=');
        if (memchr(s + pair, '%', (size_t)(equals - pair)) != NULL) return -1;
        pair = stop + 1;
    }
    return 0;
}

static PyObject *text_of(Text s, Py_ssize_t a, Py_ssize_t b)
{
    return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, s + a, b - a);
}

/* A counted field as scan_text converts it: None for "-" (or `dash` when given), else its
 * int. Up to 18 digits fit a long long; 19 and 20 go through PyLong_FromString. */
static PyObject *count_of(Text s, Py_ssize_t a, Py_ssize_t b, PyObject *dash)
{
    if (b - a == 1 && s[a] == '-') {
        PyObject *value = dash == NULL ? Py_None : dash;
        Py_INCREF(value);
        return value;
    }
    if (b - a <= 18) {
        long long value = 0;
        for (Py_ssize_t i = a; i < b; i++) value = value * 10 + (s[i] - '0');
        return PyLong_FromLongLong(value);
    }
    char digits[DIGITS + 1];
    memcpy(digits, s + a, (size_t)(b - a));
    digits[b - a] = '\0';
    return PyLong_FromString(digits, NULL, 10);
}

/* The moment of a time field: the previous line's when the text is the same, else the
 * cache's, else what `convert` (accesslog._time) makes of it. NULL with no error set when
 * it does not convert (ValueError): the Python reads that line. */
typedef struct {
    Py_ssize_t at, length;
    PyObject *moment;
} Last;

static PyObject *moment_of(Text s, Fields *f, PyObject *times, PyObject *convert, Last *last)
{
    Py_ssize_t a = f->stamp[0], n = f->stamp[1] - f->stamp[0];
    if (last->moment != NULL && last->length == n && memcmp(s + last->at, s + a, (size_t)n) == 0) {
        last->at = a;
        return last->moment;
    }
    PyObject *stamp = text_of(s, a, a + n);
    if (stamp == NULL) return NULL;
    PyObject *moment = PyDict_GetItemWithError(times, stamp);
    if (moment != NULL) {
        Py_INCREF(moment);
    } else if (!PyErr_Occurred()) {
        moment = PyObject_CallOneArg(convert, stamp);
        if (moment == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) PyErr_Clear();
    }
    Py_DECREF(stamp);
    if (moment == NULL) return NULL;
    Py_XSETREF(last->moment, moment);
    last->at = a;
    last->length = n;
    return moment;
}

static PyObject *hit_of(Text s, Fields *f, Py_ssize_t id_a, Py_ssize_t id_b, PyObject *moment)
{
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) return NULL;
    int key_dash = f->key[1] - f->key[0] == 1 && s[f->key[0]] == '-';
    int agent_none = !f->has_agent || (f->agent[1] - f->agent[0] == 1 && s[f->agent[0]] == '-');
    PyObject *items[10] = {
        text_of(s, id_a, id_b),
        text_of(s, f->bucket[0], f->bucket[1]),
        key_dash ? Py_NewRef(Py_None) : text_of(s, f->key[0], f->key[1]),
        Py_NewRef(moment),
        text_of(s, f->ip[0], f->ip[1]),
        text_of(s, f->operation[0], f->operation[1]),
        count_of(s, f->status[0], f->status[1], NULL),
        count_of(s, f->sent[0], f->sent[1], zero),
        count_of(s, f->size[0], f->size[1], NULL),
        agent_none ? Py_NewRef(Py_None) : text_of(s, f->agent[0], f->agent[1]),
    };
    Py_DECREF(zero);
    PyObject *hit = PyTuple_New(10);
    for (int i = 0; i < 10; i++) {
        if (items[i] == NULL || hit == NULL) {
            for (int j = i; j < 10; j++) Py_XDECREF(items[j]);
            Py_XDECREF(hit);
            return NULL;
        }
        PyTuple_SET_ITEM(hit, i, items[i]);
    }
    return hit;
}

PyDoc_STRVAR(scan_doc,
"scan(text, at, most, hits, times, convert) -> (other, at, lines) or None\n\n"
"Read lines of `text` from offset `at`, at most `most` of them, while each is in the\n"
"plain form scan_text's Python reads without doubt: a hit's row is appended to `hits`,\n"
"a record without a link id counted in `other`. Stops before the first line it leaves\n"
"to the Python, and returns the offset that line starts at and how many lines were read\n"
"(`at` is past the end once every line is). None when `text` holds a character past\n"
"U+00FF (then it reads nothing). `times` is accesslog's cache of converted time fields,\n"
"`convert` accesslog._time.");

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "scan takes 6 arguments");
        return NULL;
    }
    PyObject *text = args[0], *hits = args[3], *times = args[4], *convert = args[5];
    if (!PyUnicode_Check(text) || !PyList_Check(hits) || !PyDict_Check(times)) {
        PyErr_SetString(PyExc_TypeError, "scan(str, int, int, list, dict, callable)");
        return NULL;
    }
    Py_ssize_t at = PyLong_AsSsize_t(args[1]);
    if (at == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t most = PyLong_AsSsize_t(args[2]);
    if (most == -1 && PyErr_Occurred()) return NULL;
    if (PyUnicode_READY(text) < 0) return NULL;
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) Py_RETURN_NONE;
    Text s = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    if (at < 0) {
        PyErr_SetString(PyExc_ValueError, "at must not be negative");
        return NULL;
    }
    Py_ssize_t other = 0, lines = 0;
    Last last = {0, 0, NULL};
    Fields f;
    while (at <= size && lines < most) {
        Py_ssize_t end = upto(s, at, size, '\n');
        if (!match_line(s, at, end, &f)) break;
        Py_ssize_t id_a = 0, id_b = 0;
        int found = f.has_uri ? link_id(s, f.uri[0], f.uri[1], &id_a, &id_b) : 0;
        if (found < 0) break;
        PyObject *moment = moment_of(s, &f, times, convert, &last);
        if (moment == NULL) {
            if (PyErr_Occurred()) goto fail;
            break;
        }
        if (found) {
            PyObject *hit = hit_of(s, &f, id_a, id_b, moment);
            if (hit == NULL) goto fail;
            int appended = PyList_Append(hits, hit);
            Py_DECREF(hit);
            if (appended < 0) goto fail;
        } else {
            other++;
        }
        lines++;
        at = end + 1;
    }
    Py_XDECREF(last.moment);
    return Py_BuildValue("(nnn)", other, at, lines);
fail:
    Py_XDECREF(last.moment);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "sharebatch.receipts._linescan",
    "accesslog.scan_text's common case, compiled (see the source's opening comment).",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__linescan(void) { return PyModule_Create(&module); }
