/*
 * The chat page served from the bytes the build embedded (declared in page.h). The generated
 * source (build/.../generated/chat_html.c, written by cmake/embed_file.cmake from page/chat.html)
 * defines the two symbols below; only this file knows them.
 */
#include "chat_gateway/page.h"

#include <stddef.h>

/* Defined in the generated source. */
extern const unsigned char cg__page_chat_html_bytes[];
extern const size_t cg__page_chat_html_len;

const char *cg_page_chat_html(size_t *len)
{
    *len = cg__page_chat_html_len;
    return (const char *)cg__page_chat_html_bytes;
}

int cg_page_chat_reply(mg_http_request *req)
{
    size_t len = 0;
    const char *html = cg_page_chat_html(&len);
    return mg_http_reply(req, 200, CG_PAGE_CONTENT_TYPE, html, len);
}

void cg_page_chat_handle(mg_http_request *req, void *arg)
{
    (void)arg;
    (void)cg_page_chat_reply(req);
}
