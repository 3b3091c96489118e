#include "suites.h"
void run_outbox_tests() {}
