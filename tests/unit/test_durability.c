/* The level a reply may claim from the log's durable reports (src/durability.c). The case the
 * server got wrong (issue 9, item 2): in the interval and none modes a SYNCED report for an
 * older watermark (an interval fdatasync, a roll's or a checkpoint's sync of the log) arrives
 * after a WRITTEN report for a newer one; a reply whose records lie above the synced watermark
 * must still say WRITTEN. */
#include "check.h"
#include "durability.h"

static void test_synced_late_for_older_watermark(void)
{
    struct durability_marks marks;
    durability_marks_init(&marks, 1);
    durability_marks_report(&marks, 10, LOG_DURABLE_WRITTEN);
    durability_marks_report(&marks, 20, LOG_DURABLE_WRITTEN);
    durability_marks_report(&marks, 10, LOG_DURABLE_SYNCED); /* the sync of [1, 10) lands */
    CHECK_EQ(durability_marks_level(&marks, 20), LOG_DURABLE_WRITTEN);
    CHECK_EQ(durability_marks_level(&marks, 11), LOG_DURABLE_WRITTEN);
    CHECK_EQ(durability_marks_level(&marks, 10), LOG_DURABLE_SYNCED);
    CHECK_EQ(durability_marks_level(&marks, 2), LOG_DURABLE_SYNCED);
    CHECK_EQ(durability_marks_level(&marks, 21), 0);
    /* A later WRITTEN report does not take SYNCED away from what was synced. */
    durability_marks_report(&marks, 30, LOG_DURABLE_WRITTEN);
    CHECK_EQ(durability_marks_level(&marks, 10), LOG_DURABLE_SYNCED);
    CHECK_EQ(durability_marks_level(&marks, 30), LOG_DURABLE_WRITTEN);
}

static void test_reports_never_go_back(void)
{
    struct durability_marks marks;
    durability_marks_init(&marks, 100);
    CHECK_EQ(durability_marks_level(&marks, 100), LOG_DURABLE_SYNCED); /* recovered */
    CHECK_EQ(durability_marks_level(&marks, 101), 0);
    durability_marks_report(&marks, 150, LOG_DURABLE_SYNCED);  /* always mode */
    durability_marks_report(&marks, 120, LOG_DURABLE_SYNCED);  /* older: ignored */
    durability_marks_report(&marks, 140, LOG_DURABLE_WRITTEN); /* older: ignored */
    CHECK_EQ(marks.written_end, 150);
    CHECK_EQ(marks.synced_end, 150);
    CHECK_EQ(durability_marks_level(&marks, 150), LOG_DURABLE_SYNCED);
    /* A SYNCED report repeating a watermark first heard as WRITTEN (log.h allows it). */
    durability_marks_report(&marks, 160, LOG_DURABLE_WRITTEN);
    CHECK_EQ(durability_marks_level(&marks, 160), LOG_DURABLE_WRITTEN);
    durability_marks_report(&marks, 160, LOG_DURABLE_SYNCED);
    CHECK_EQ(durability_marks_level(&marks, 160), LOG_DURABLE_SYNCED);
}

int main(void)
{
    RUN_TEST(test_synced_late_for_older_watermark);
    RUN_TEST(test_reports_never_go_back);
    return check_exit();
}
