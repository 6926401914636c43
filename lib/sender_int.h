/*
 * sender_int.h - the inside of libevents' sender (sender.c): the thread that takes an
 * emitter's events from its outbox and posts them. The emitter (emitter.c) starts it when it
 * opens, wakes it when events are ready, and stops it when it closes.
 */
#ifndef EVENTS_SENDER_INT_H
#define EVENTS_SENDER_INT_H

#include "events.h"

/* Starts / stops the sender thread; sender__stop waits for it to end. */
int sender__start(events_emitter *em);
void sender__stop(events_emitter *em);
/* Wakes the sender for the events that are ready (any thread). */
void sender__wake(events_emitter *em);

#endif
