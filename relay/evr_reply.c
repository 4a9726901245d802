/*  evr_reply.c - a relay's ControlReply as evrelayctl shows it.
*/
#include "evr_reply.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

//  Objects nested deeper than this print as compact JSON values rather
//  than as sections of their own (a reply is untrusted: its nesting must
//  not decide how deep the printers recurse).
#define S_MAX_DEPTH 8

//  --------------------------------------------------------------------------
//  Text tables

//  A table of strings printed in aligned columns, the last one unpadded.
typedef struct {
    size_t ncols;
    size_t nrows; //  rows held, the header included
    size_t alloc; //  rows allocated
    char **cells; //  nrows * ncols strings, owned
} s_table_t;

//  Creates a table with ncols columns; the first row added is the header.
static s_table_t *s_table_new(size_t ncols)
{
    s_table_t *self = calloc(1, sizeof *self);
    if (self) {
        self->ncols = ncols;
    }
    return self;
}

//  Destroys a table and its cells; sets *self_p to NULL.
static void s_table_destroy(s_table_t **self_p)
{
    s_table_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->nrows * self->ncols; i++) {
            free(self->cells[i]);
        }
        free(self->cells);
        free(self);
        *self_p = NULL;
    }
}

//  Adds a row of ncols cells and takes ownership of them (NULL cells print
//  as "-"). Returns 0, or -1 when out of memory.
static int s_table_add(s_table_t *self, char **row)
{
    if (self->nrows == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 16;
        char **cells =
            realloc(self->cells, alloc * self->ncols * sizeof *cells);
        if (!cells) {
            for (size_t c = 0; c < self->ncols; c++) {
                free(row[c]);
            }
            return -1;
        }
        self->cells = cells;
        self->alloc = alloc;
    }
    memcpy(self->cells + self->nrows * self->ncols, row,
           self->ncols * sizeof *row);
    self->nrows++;
    return 0;
}

//  Adds a row of constant strings (copied).
static int s_table_add_text(s_table_t *self, const char *const *texts)
{
    char **row = calloc(self->ncols ? self->ncols : 1, sizeof *row);
    if (!row) {
        return -1;
    }
    for (size_t c = 0; c < self->ncols; c++) {
        row[c] = texts[c] ? strdup(texts[c]) : NULL;
    }
    int rc = s_table_add(self, row);
    free(row);
    return rc;
}

//  Number of data rows (the header not counted).
static size_t s_table_rows(s_table_t *self)
{
    return self->nrows ? self->nrows - 1 : 0;
}

//  Prints the table with columns two spaces apart.
static void s_table_print(s_table_t *self, FILE *out)
{
    size_t *width = calloc(self->ncols ? self->ncols : 1, sizeof *width);
    if (!width) {
        return;
    }
    for (size_t r = 0; r < self->nrows; r++) {
        for (size_t c = 0; c < self->ncols; c++) {
            const char *cell = self->cells[r * self->ncols + c];
            size_t len = strlen(cell ? cell : "-");
            if (len > width[c]) {
                width[c] = len;
            }
        }
    }
    for (size_t r = 0; r < self->nrows; r++) {
        for (size_t c = 0; c < self->ncols; c++) {
            const char *cell = self->cells[r * self->ncols + c];
            if (c + 1 < self->ncols) {
                fprintf(out, "%-*s  ", (int)width[c], cell ? cell : "-");
            } else {
                fprintf(out, "%s\n", cell ? cell : "-");
            }
        }
    }
    free(width);
}

//  --------------------------------------------------------------------------
//  Result printers

//  Returns a JSON value as display text (new string): strings unquoted,
//  numbers and literals as JSON, containers as compact JSON. NULL in,
//  NULL out.
static char *s_json_text(json_t *value)
{
    char buf[64];
    switch (value ? json_typeof(value) : JSON_NULL) {
        case JSON_STRING:
            return strdup(json_string_value(value));
        case JSON_INTEGER:
            snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(value));
            return strdup(buf);
        case JSON_REAL:
            snprintf(buf, sizeof buf, "%.6g", json_real_value(value));
            return strdup(buf);
        default:
            return value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY)
                         : NULL;
    }
}

//  Adds one subscriber row (EVENT EXPIRE TTL SOCKET). Returns 0, or -1
//  when sub is not an object.
static int s_subscriber_row(s_table_t *table, json_t *event, json_t *sub)
{
    if (!json_is_object(sub)) {
        return -1;
    }
    char *row[4] = {s_json_text(json_object_get(event, "name")),
                    s_json_text(json_object_get(sub, "expire")),
                    s_json_text(json_object_get(sub, "ttl")),
                    s_json_text(json_object_get(sub, "socket"))};
    return s_table_add(table, row);
}

//  Adds the rows of one event object: "Subscribers" array or a single
//  "Subscriber". Returns 0, or -1 on an unexpected shape.
static int s_event_rows(s_table_t *table, json_t *event)
{
    if (!json_is_object(event)) {
        return -1;
    }
    json_t *one = json_object_get(event, "Subscriber");
    if (one) {
        return s_subscriber_row(table, event, one);
    }
    json_t *subs = json_object_get(event, "Subscribers");
    if (subs && !json_is_array(subs)) {
        return -1;
    }
    size_t i;
    json_t *sub;
    json_array_foreach(subs, i, sub)
    {
        if (s_subscriber_row(table, event, sub)) {
            return -1;
        }
    }
    return 0;
}

//  Prints a subscribers answer, {"Events":[...]} or {"Event":{...}}.
//  Returns 0, or -1 when the shape is not one of those.
static int s_print_subscribers(json_t *result, FILE *out)
{
    static const char *const head[] = {"EVENT", "EXPIRE", "TTL", "SOCKET"};
    s_table_t *table = s_table_new(4);
    if (!table || s_table_add_text(table, head)) {
        s_table_destroy(&table);
        return -1;
    }
    int rc = 0;
    json_t *events = json_object_get(result, "Events");
    if (events) {
        size_t i;
        json_t *event;
        if (!json_is_array(events)) {
            rc = -1;
        }
        json_array_foreach(events, i, event)
        {
            if (rc == 0) {
                rc = s_event_rows(table, event);
            }
        }
    } else {
        rc = s_event_rows(table, json_object_get(result, "Event"));
    }
    if (rc == 0) {
        if (s_table_rows(table)) {
            s_table_print(table, out);
        } else {
            fprintf(out, "no subscribers\n");
        }
    }
    s_table_destroy(&table);
    return rc;
}

//  Prints an events list answer {"Events":[{"name","id"}...]} as ID NAME.
//  Returns 0, or -1 on an unexpected shape.
static int s_print_list(json_t *events, FILE *out)
{
    static const char *const head[] = {"ID", "NAME"};
    s_table_t *table = s_table_new(2);
    if (!table || s_table_add_text(table, head)) {
        s_table_destroy(&table);
        return -1;
    }
    int rc = 0;
    size_t i;
    json_t *event;
    json_array_foreach(events, i, event)
    {
        if (!json_is_object(event)) {
            rc = -1;
            break;
        }
        char *row[2] = {s_json_text(json_object_get(event, "id")),
                        s_json_text(json_object_get(event, "name"))};
        if (s_table_add(table, row)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        if (s_table_rows(table)) {
            s_table_print(table, out);
        } else {
            fprintf(out, "no events\n");
        }
    }
    s_table_destroy(&table);
    return rc;
}

//  True when value prints as a table: a non-empty array of objects.
static bool s_is_table(json_t *value)
{
    if (!json_is_array(value) || json_array_size(value) == 0) {
        return false;
    }
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item)
    {
        if (!json_is_object(item)) {
            return false;
        }
    }
    return true;
}

//  Upper-cases a copy of text (a table header).
static char *s_upper(const char *text)
{
    char *copy = strdup(text);
    for (char *p = copy; p && *p; p++) {
        if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    return copy;
}

//  Deletes the keys of a table row whose values are objects (a target's
//  latency histogram): a cell cannot show them; --json does.
static void s_drop_nested(json_t *row)
{
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(row, tmp, key, value)
    {
        if (json_is_object(value)) {
            json_object_del(row, key);
        }
    }
}

//  Flattens "children" arrays (a virtual target's child targets) into rows
//  right after their parent, the child's socket indented. Returns a new
//  array.
static json_t *s_flatten_children(json_t *array)
{
    json_t *flat = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        json_t *row = json_deep_copy(item);
        json_t *children = json_object_get(item, "children");
        json_object_del(row, "children");
        s_drop_nested(row);
        json_array_append_new(flat, row);
        size_t j;
        json_t *child;
        json_array_foreach(children, j, child)
        {
            json_t *crow = json_deep_copy(child);
            const char *sock =
                json_string_value(json_object_get(child, "socket"));
            if (sock) {
                char indented[1200];
                snprintf(indented, sizeof indented, "  `- %s", sock);
                json_object_set_new(crow, "socket", json_string(indented));
            }
            json_object_del(crow, "children");
            s_drop_nested(crow);
            json_array_append_new(flat, crow);
        }
    }
    return flat;
}

//  Prints an array of objects as a table: the union of their keys as
//  columns in first-seen order, "socket" last (it is the widest). A
//  virtual target's children follow it, indented.
static void s_print_object_table(json_t *nested, FILE *out)
{
    json_t *array = s_flatten_children(nested);
    json_t *columns = json_array();
    json_t *seen = json_object(); //  the keys in columns
    bool has_socket = false;
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *key;
        json_t *unused;
        json_object_foreach(item, key, unused)
        {
            if (strcmp(key, "socket") == 0) {
                has_socket = true;
            } else if (!json_object_get(seen, key)) {
                json_object_set_new(seen, key, json_true());
                json_array_append_new(columns, json_string(key));
            }
        }
    }
    if (has_socket) {
        json_array_append_new(columns, json_string("socket"));
    }
    //  objects without keys: no column to show
    size_t ncols = json_array_size(columns);
    s_table_t *table = ncols ? s_table_new(ncols) : NULL;
    char **row = table ? calloc(ncols, sizeof *row) : NULL;
    if (row) {
        for (size_t c = 0; c < ncols; c++) {
            row[c] = s_upper(json_string_value(json_array_get(columns, c)));
        }
        int rc = s_table_add(table, row);
        json_array_foreach(array, i, item)
        {
            for (size_t c = 0; c < ncols && rc == 0; c++) {
                const char *key = json_string_value(json_array_get(columns, c));
                row[c] = s_json_text(json_object_get(item, key));
            }
            if (rc == 0) {
                rc = s_table_add(table, row);
            }
        }
        if (rc == 0) {
            s_table_print(table, out);
        }
    }
    free(row);
    s_table_destroy(&table);
    json_decref(seen);
    json_decref(columns);
    json_decref(array);
}

//  Longest "prefix.key" label among the scalar leaves of an object
//  (depth levels down already), for aligning the values of
//  s_print_section.
static size_t s_label_width(json_t *object, size_t prefix_len, int depth)
{
    size_t width = 0;
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        size_t len = prefix_len + (prefix_len ? 1 : 0) + strlen(key);
        if (json_is_object(value) && depth < S_MAX_DEPTH) {
            len = s_label_width(value, len, depth + 1);
        } else if (s_is_table(value)) {
            len = 0;
        }
        if (len > width) {
            width = len;
        }
    }
    return width;
}

//  Prints an object generically (depth levels down already), in two
//  passes: first (tables false) its scalars as "prefix.key  value" lines,
//  nested objects recursively; then (tables true) its arrays of objects as
//  titled tables.
static void s_print_section(json_t *object, const char *prefix, int width,
                            bool tables, FILE *out, int depth)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        size_t size = strlen(prefix) + strlen(key) + 2;
        char *label = malloc(size);
        if (!label) {
            return;
        }
        snprintf(label, size, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(value) && depth < S_MAX_DEPTH) {
            s_print_section(value, label, width, tables, out, depth + 1);
        } else if (s_is_table(value)) {
            if (tables) {
                fprintf(out, "%s%s:\n", width ? "\n" : "", label);
                s_print_object_table(value, out);
                width = 1; //  a blank line before any further table
            }
        } else if (!tables) {
            char *text = s_json_text(value);
            fprintf(out, "%-*s  %s\n", width, label, text ? text : "null");
            free(text);
        }
        free(label);
    }
}

//  The columns of the members table of `cluster`: key, header.
static const char *const s_member_columns[][2] = {
    {"node", "NODE"},
    {"endpoint", "ENDPOINT"},
    {"state", "STATE"},
    {"ready", "READY"},
    {"instance", "INSTANCE"},
    {"seq", "SEQ"},
    {"applied_seq", "APPLIED"},
    {"hlc", "HLC"},
    {"records", "RECORDS"},
    {"digest", "DIGEST"},
    {"last_heartbeat_ms", "HEARTBEAT_MS"},
    {"last_sync_ms", "SYNC_MS"},
    {"deltas_in", "DELTAS_IN"},
    {"snapshots_pulled", "SNAPSHOTS"},
    {"gaps", "GAPS"},
};

#define S_MEMBER_COLUMNS (sizeof s_member_columns / sizeof *s_member_columns)

//  Prints a `cluster` answer: this relay's values as "key  value" lines
//  (store counters as store.KEY), then the members as a table. Returns 0,
//  or -1 when it is not an object.
static int s_print_cluster(json_t *result, FILE *out)
{
    if (!json_is_object(result)) {
        return -1;
    }
    json_t *copy = json_deep_copy(result);
    json_t *members = json_object_get(result, "members");
    json_object_del(copy, "members");
    int width = (int)s_label_width(copy, 0, 0);
    s_print_section(copy, "", width, false, out, 0);
    json_decref(copy);
    if (!json_is_array(members) || json_array_size(members) == 0) {
        fprintf(out, "\nno members\n");
        return 0;
    }
    s_table_t *table = s_table_new(S_MEMBER_COLUMNS);
    const char *head[S_MEMBER_COLUMNS];
    for (size_t c = 0; c < S_MEMBER_COLUMNS; c++) {
        head[c] = s_member_columns[c][1];
    }
    int rc = table ? s_table_add_text(table, head) : -1;
    size_t i;
    json_t *member;
    json_array_foreach(members, i, member)
    {
        char *row[S_MEMBER_COLUMNS];
        for (size_t c = 0; c < S_MEMBER_COLUMNS; c++) {
            row[c] =
                s_json_text(json_object_get(member, s_member_columns[c][0]));
        }
        if (rc == 0) {
            rc = s_table_add(table, row);
        } else {
            for (size_t c = 0; c < S_MEMBER_COLUMNS; c++) {
                free(row[c]);
            }
        }
    }
    if (rc == 0) {
        fprintf(out, "\nmembers:\n");
        s_table_print(table, out);
    }
    s_table_destroy(&table);
    return rc;
}

//  Prints a JSON value indented, the fallback for unknown shapes.
static void s_print_pretty(json_t *result, FILE *out)
{
    char *text = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (text) {
        fprintf(out, "%s\n", text);
        free(text);
    }
}

//  Prints a result as text, picking the printer from its shape and the
//  command's kind.
static void s_print_result(const char *result_json, evr_reply_kind_t kind,
                           FILE *out)
{
    json_error_t jerr;
    json_t *result = json_loads(result_json, JSON_DECODE_ANY, &jerr);
    if (!result) {
        fprintf(out, "%s\n", result_json); //  not JSON: show it as it came
        return;
    }
    int rc = -1;
    json_t *events = json_object_get(result, "Events");
    if (json_is_string(result) &&
        strcmp(json_string_value(result), "OK") == 0) {
        fprintf(out, "OK\n");
        rc = 0;
    } else if (json_is_array(events) &&
               (kind == EVR_REPLY_SUBSCRIBERS ||
                (kind != EVR_REPLY_LIST && s_is_table(events) &&
                 json_object_get(json_array_get(events, 0), "Subscribers")))) {
        rc = s_print_subscribers(result, out);
    } else if (json_is_array(events)) {
        rc = s_print_list(events, out);
    } else if (json_is_object(json_object_get(result, "Event"))) {
        rc = s_print_subscribers(result, out);
    } else if (kind == EVR_REPLY_CLUSTER) {
        rc = s_print_cluster(result, out);
    } else if (kind == EVR_REPLY_STATS && json_is_object(result)) {
        int width = (int)s_label_width(result, 0, 0);
        s_print_section(result, "", width, false, out, 0);
        s_print_section(result, "", width, true, out, 0);
        rc = 0;
    }
    if (rc) {
        s_print_pretty(result, out);
    }
    json_decref(result);
}

//  Reports an error answer: "error CODE: MESSAGE[: DATA]" on err, and
//  with --json the JSON-RPC error object on out too.
static void s_print_error(const Evrelay__ControlReply__Error *error,
                          bool as_json, FILE *out, FILE *err)
{
    json_t *data = NULL;
    if (error->data_json) {
        data = json_loads(error->data_json, JSON_DECODE_ANY, NULL);
        if (!data) {
            data = json_string(error->data_json);
        }
    }
    if (as_json) {
        json_t *object = json_object();
        json_object_set_new(object, "code", json_integer(error->code));
        json_object_set_new(object, "message", json_string(error->message));
        if (data) {
            json_object_set(object, "data", data);
        }
        char *text = json_dumps(object, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(object);
        if (text) {
            fprintf(out, "%s\n", text);
            free(text);
        }
    }
    fprintf(err, "error %d: %s", (int)error->code, error->message);
    if (error->data_json) {
        fprintf(err, ": %s",
                json_is_string(data) ? json_string_value(data)
                                     : error->data_json);
    }
    fprintf(err, "\n");
    json_decref(data);
}

//  --------------------------------------------------------------------------
//  Show a reply

//  Print a reply: the error, the result as the relay sent it (as_json), or
//  as readable text.
int evr_reply_print(const Evrelay__ControlReply *reply, evr_reply_kind_t kind,
                    bool as_json, const char *endpoint, FILE *out, FILE *err)
{
    if (reply->error) {
        s_print_error(reply->error, as_json, out, err);
        return -1;
    }
    if (!reply->result_json) {
        fprintf(err, "evrelayctl: answer from %s has no result\n", endpoint);
        return -1;
    }
    if (as_json) {
        fprintf(out, "%s\n", reply->result_json);
    } else {
        s_print_result(reply->result_json, kind, out);
    }
    return 0;
}
