// Debian's libopenblas-dev installs cblas.h under the multiarch include folder.
#include <cblas.h>
// Thread count control (OpenBLAS extension, declared in openblas_config / cblas.h).
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
