/*  test_decode.c - unit tests for evr_decode (protobuf Event -> view).

    Events are built as protobuf-c structs in memory, as the relay's decoder
    leaves them: the checks and their order (name, then params), the
    reasons returned, and the view of an accepted event.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "evr_decode.h"
#include "evr_defaults.h"

#define S_MAX 8

//  An event named name with n params: p0 = int 0, p1 = str "v1", p2 = no
//  value, p3 = int 3 ...; named below index `named`, positional from it.
typedef struct {
    Evrelay__Event event;
    Evrelay__Param params[S_MAX + 2];
    Evrelay__Param *pointers[S_MAX + 2];
    char names[S_MAX + 2][24];
    char values[S_MAX + 2][24];
} s_event_t;

//  Fill e as described above.
static void s_event(s_event_t *e, const char *name, size_t n, size_t named)
{
    memset(e, 0, sizeof *e);
    evrelay__event__init(&e->event);
    e->event.name = (char *)name;
    for (size_t i = 0; i < n; i++) {
        Evrelay__Param *p = &e->params[i];
        evrelay__param__init(p);
        snprintf(e->names[i], sizeof e->names[i], "p%zu", i);
        p->name = i < named ? e->names[i] : NULL;
        if (i % 3 == 0) {
            p->value_case = EVRELAY__PARAM__VALUE_INT_VALUE;
            p->int_value = (int64_t)i;
        } else if (i % 3 == 1) {
            snprintf(e->values[i], sizeof e->values[i], "v%zu", i);
            p->value_case = EVRELAY__PARAM__VALUE_STR_VALUE;
            p->str_value.data = (uint8_t *)e->values[i];
            p->str_value.len = strlen(e->values[i]);
        }
        e->pointers[i] = p;
    }
    e->event.n_params = n;
    e->event.params = e->pointers;
}

//  --------------------------------------------------------------------------
//  An accepted event: the view points at the event's own bytes.

static void test_view(void **state)
{
    s_event_t e;
    evr_param_t params[S_MAX];
    evr_event_view_t view;
    s_event(&e, "E_X", 4, 2);
    assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                     EVR_DECODE_OK);
    assert_string_equal(view.name, "E_X");
    assert_int_equal(view.name_len, 3);
    assert_ptr_equal(view.params, params);
    assert_int_equal(view.nparams, 4);
    assert_string_equal(params[0].name, "p0");
    assert_int_equal(params[0].name_len, 2);
    assert_int_equal(params[0].type, EVR_PARAM_INT);
    assert_int_equal(params[0].i, 0);
    assert_int_equal(params[1].type, EVR_PARAM_STR);
    assert_int_equal(params[1].s_len, 2);
    assert_memory_equal(params[1].s, "v1", 2);
    assert_null(params[2].name); //  positional
    assert_int_equal(params[2].name_len, 0);
    assert_int_equal(params[2].type, EVR_PARAM_NULL);
    assert_null(params[2].s);
    assert_int_equal(params[3].type, EVR_PARAM_INT);
    assert_int_equal(params[3].i, 3);

    s_event(&e, "E_EMPTY", 0, 0);
    assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                     EVR_DECODE_OK);
    assert_int_equal(view.nparams, 0);
}

//  --------------------------------------------------------------------------
//  Names: 1..64 printable, non-space characters.

static void test_bad_name(void **state)
{
    s_event_t e;
    evr_param_t params[S_MAX];
    evr_event_view_t view;
    char name[EVR_MAX_EVENT_NAME + 2];
    memset(name, 'E', sizeof name);
    name[EVR_MAX_EVENT_NAME] = 0;
    s_event(&e, name, 1, 1);
    assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                     EVR_DECODE_OK);
    assert_int_equal(view.name_len, EVR_MAX_EVENT_NAME);
    name[EVR_MAX_EVENT_NAME] = 'E';
    name[EVR_MAX_EVENT_NAME + 1] = 0;
    const char *bad[] = {name, "", "E X", "E\t", "E\x7f", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_event(&e, bad[i], 1, 1);
        assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                         EVR_DECODE_BAD_NAME);
    }
    s_event(&e, NULL, 0, 0);
    assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                     EVR_DECODE_BAD_NAME);
}

//  --------------------------------------------------------------------------
//  Params: at most max_params; the name is checked first.

static void test_too_many_params(void **state)
{
    s_event_t e;
    evr_param_t params[S_MAX];
    evr_event_view_t view;
    s_event(&e, "E_P", 4, 4);
    assert_int_equal(evr_decode_event(&e.event, params, 4, &view),
                     EVR_DECODE_OK);
    assert_int_equal(evr_decode_event(&e.event, params, 3, &view),
                     EVR_DECODE_TOO_MANY_PARAMS);
    s_event(&e, "E_P", S_MAX + 1, 0);
    assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                     EVR_DECODE_TOO_MANY_PARAMS);
    //  both wrong: the name is the reason
    s_event(&e, "bad name", S_MAX + 1, 0);
    assert_int_equal(evr_decode_event(&e.event, params, S_MAX, &view),
                     EVR_DECODE_BAD_NAME);
    assert_true(EVR_DECODE_BAD_NAME < 0 && EVR_DECODE_TOO_MANY_PARAMS < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_too_many_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
