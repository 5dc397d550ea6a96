/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The Castagnoli CRC (crc32c), for remote-cowd's spool slots.  Standard
 * form: rcow_crc32c(0, "123456789", 9) == 0xe3069283; pass the previous
 * result to continue a running CRC.
 */
#ifndef RCOW_CRC32C_H
#define RCOW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t rcow_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
