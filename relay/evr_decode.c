/*  evr_decode.c - turn a decoded protobuf Event into an event view. */
#include "evr_decode.h"
#include "evr_table.h"

#include <string.h>

//  Fill view (and params) from e.
int evr_decode_event(const Evrelay__Event *e, evr_param_t *params,
                     size_t max_params, evr_event_view_t *view)
{
    if (!e->name || !evr_table_valid_name(e->name))
        return EVR_DECODE_BAD_NAME;
    if (e->n_params > max_params)
        return EVR_DECODE_TOO_MANY_PARAMS;
    for (size_t i = 0; i < e->n_params; i++) {
        const Evrelay__Param *p = e->params[i];
        evr_param_t *out = &params[i];
        out->name = p->name;
        out->name_len = p->name ? strlen(p->name) : 0;
        out->i = 0;
        out->s = NULL;
        out->s_len = 0;
        switch (p->value_case) {
            case EVRELAY__PARAM__VALUE_INT_VALUE:
                out->type = EVR_PARAM_INT;
                out->i = p->int_value;
                break;
            case EVRELAY__PARAM__VALUE_STR_VALUE:
                out->type = EVR_PARAM_STR;
                out->s = (const char *)p->str_value.data;
                out->s_len = p->str_value.len;
                break;
            default:
                out->type = EVR_PARAM_NULL;
                break;
        }
    }
    view->name = e->name;
    view->name_len = strlen(e->name);
    view->params = params;
    view->nparams = e->n_params;
    return EVR_DECODE_OK;
}
