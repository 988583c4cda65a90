/*
 * Removing a test's temporary directory tree (harness directories, a suite's scratch
 * directory). Best effort and never fails: what cannot be removed stays, and removal goes on
 * with the rest.
 */
#ifndef MG_TESTS_SUPPORT_RM_TREE_H
#define MG_TESTS_SUPPORT_RM_TREE_H

/* Removes dir and everything below it, without following symbolic links. */
void mgt_rm_tree(const char *dir);

#endif
