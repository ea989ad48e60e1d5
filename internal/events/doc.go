// Package events defines what lifecycle-worker knows about an identity
// lifecycle change: the Event, who it is about (Subject), what happened
// (Kind) and where it applies (Scope). Intake packages (oktahook, scim, ssf,
// oktalog) turn IdP input into Events and hand them to a Publisher; nothing
// downstream knows which IdP said it.
package events
