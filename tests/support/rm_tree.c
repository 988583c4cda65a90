/*
 * Removing a directory tree (see rm_tree.h): nftw, depth first, so that each directory is
 * empty by the time it is removed.
 */
#include "support/rm_tree.h"

#include <ftw.h>
#include <stdio.h>

static int mgt_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void mgt_rm_tree(const char *dir)
{
    nftw(dir, mgt_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
