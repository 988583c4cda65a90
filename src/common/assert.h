/*
 * MG_ASSERT: always-on assertions for programmer errors (broken invariants), as TigerBeetle
 * uses them. On failure it prints the file, line and expression and aborts, so a core dump or
 * sanitizer report shows the exact place. Never use it for operating errors (bad input, I/O).
 */
#ifndef MG_COMMON_ASSERT_H
#define MG_COMMON_ASSERT_H

_Noreturn void mg__assert_fail(const char *expr, const char *file, int line, const char *func);

#define MG_ASSERT(expr) ((expr) ? (void)0 : mg__assert_fail(#expr, __FILE__, __LINE__, __func__))

#define MG_UNREACHABLE() mg__assert_fail("unreachable", __FILE__, __LINE__, __func__)

#endif
