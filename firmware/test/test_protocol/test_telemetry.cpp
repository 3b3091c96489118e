#include "suites.h"
void run_telemetry_tests() {}
