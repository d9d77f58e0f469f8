// Prints the scale model's table for the deployments of docs/scale.md.
import { table } from "./scale-model.ts";

console.log(table());
