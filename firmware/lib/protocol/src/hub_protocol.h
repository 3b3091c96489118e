// The portable protocol core of the ESP32 telemetry hub firmware (protocol v1, docs/protocol.md).
// C++17, no Arduino headers, no heap: it builds and is tested on the host (firmware/test/).
#pragma once

#include "hub_backoff.h"
#include "hub_boot_id.h"
#include "hub_channels.h"
#include "hub_codec.h"
#include "hub_config.h"
#include "hub_crc32.h"
#include "hub_enroll.h"
#include "hub_errors.h"
#include "hub_flash_outbox.h"
#include "hub_frame_queue.h"
#include "hub_improv.h"
#include "hub_outbox.h"
#include "hub_ports.h"
#include "hub_schedule.h"
#include "hub_session.h"
#include "hub_telemetry.h"
#include "hub_types.h"
#include "hub_wire.h"
