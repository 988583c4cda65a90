#include "common/log.h"
int main(void)
{
    MG_INFO("placeholder");
    return 0;
}
