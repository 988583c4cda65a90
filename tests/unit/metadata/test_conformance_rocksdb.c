/* The metadata conformance suite on the embedded RocksDB backend: each test gets a fresh
 * database directory. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

static char conf_dir[256];

static int conf_url(char *buf, size_t size)
{
    if (conf_dir[0] == '\0') {
        snprintf(conf_dir, sizeof(conf_dir), "/tmp/magnetar-md-XXXXXX");
        if (mkdtemp(conf_dir) == NULL)
            return -1;
    }
    snprintf(buf, size, "rocksdb:%s/metadata", conf_dir);
    return 0;
}

static int conf_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void conf_cleanup(void)
{
    if (conf_dir[0] != '\0')
        nftw(conf_dir, conf_rm, 16, FTW_DEPTH | FTW_PHYS);
    conf_dir[0] = '\0';
}

#define CONF_SUITE md_conformance_rocksdb
#include "conformance.h"
