/* damage.c - warnings about files that decoded but are probably damaged or cut short.
 *
 * DESIGN: decoding keeps going past damaged packets and stops quietly at a truncated end, like
 * players do, so a file cut to its first seconds is tagged from those seconds alone. The decoder
 * records what it saw (the container's declared duration, packets skipped, a read that ended
 * early); this turns it into warnings a response can carry. The tolerance (0.5 s and 2 %) keeps
 * encoder padding and rounded header durations from raising false alarms.
 */
#include "clmr/audio.h"

#include <stdio.h>

int clmr_audio_warnings(const clmr_audio_t *a, clmr_audio_warning_t *out, int max)
{
    int n = 0;
    if (!a || !out || max <= 0) return 0;
    double decl = a->declared_duration_s, got = a->duration_s;
    int short_of_header = decl > 0 && got < decl - 0.5 && got < decl * 0.98;
    if (short_of_header || a->read_error) {
        out[n].code = "truncated";
        if (short_of_header)
            snprintf(out[n].message, sizeof out[n].message,
                     "decoded %.1f s of the %.1f s the container declares: the file looks "
                     "truncated, tags describe the decoded part only",
                     got, decl);
        else
            snprintf(out[n].message, sizeof out[n].message,
                     "reading stopped early on a damaged or truncated container after %.1f s; "
                     "tags describe the decoded part only",
                     got);
        n++;
    }
    if (n < max && a->skipped_packets > 0) {
        out[n].code = "decode_errors";
        snprintf(out[n].message, sizeof out[n].message,
                 "%ld damaged packet%s could not be decoded and %s skipped", a->skipped_packets,
                 a->skipped_packets == 1 ? "" : "s", a->skipped_packets == 1 ? "was" : "were");
        n++;
    }
    return n;
}
