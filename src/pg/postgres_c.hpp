// PostgreSQL's own C headers for a C++ translation unit: postgres.h first, as the server requires, and
// the function-manager declarations every SQL-callable function needs, with C linkage.
#pragma once

extern "C" {
#include "postgres.h"

#include "fmgr.h"
}
