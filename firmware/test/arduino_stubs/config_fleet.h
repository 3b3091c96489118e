// The fleet image: nothing compiled in (no secrets.h, no build flags). Wi-Fi, the hub URL, the device
// id and token come from NVS at run time (Improv Serial, enrollment; docs/provisioning.md).
#pragma once
