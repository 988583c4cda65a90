/*
 * The chat page: one HTML file (src/chat_gateway/page/chat.html, its CSS and JavaScript inline,
 * no dependency) that a person opens in a browser to join a room, read its messages live and
 * send to it. It speaks the gateway's WebSocket protocol (ws://<host>:3102/sub, GOIM packets)
 * and posts through the push API (api.h). The build embeds the file's bytes into the library
 * (cmake/embed_file.cmake), so the page served is the one the binary was built with.
 *
 * THREADING: the bytes are constant; cg_page_chat_html may be called from any thread, and
 * cg_page_chat_reply on the HTTP server's loop.
 */
#ifndef MG_CHAT_GATEWAY_PAGE_H
#define MG_CHAT_GATEWAY_PAGE_H

#include "common/http.h"

#include <stddef.h>

/* The page's Content-Type. */
#define CG_PAGE_CONTENT_TYPE "text/html; charset=utf-8"

/* The embedded page: a pointer to its bytes (static, not NUL-terminated) and their count in *len.
 * Cannot fail. */
const char *cg_page_chat_html(size_t *len);

/* Answers req with 200 and the page (CG_PAGE_CONTENT_TYPE). Loop thread of req's server; req is
 * invalid afterwards. Returns what mg_http_reply returns (MG_OK, MG_ECLOSED, MG_ENOMEM). */
int cg_page_chat_reply(mg_http_request *req);

/* An mg_http_handler_fn serving the page (arg is unused), for mg_http_server_route. */
void cg_page_chat_handle(mg_http_request *req, void *arg);

#endif
