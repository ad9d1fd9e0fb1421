// Preloaded into Portkey's gateway (node --import) by the benchmark: its start script listens on
// the port given with --port=N but on every interface, with no option for the address. This makes
// a listen on a port without a host listen on 127.0.0.1 only, so the benchmark's traffic, like the
// gateway itself, stays on the loopback.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number") {
    if (args[1] === undefined || args[1] === null) {
      args[1] = "127.0.0.1";
    } else if (typeof args[1] === "function") {
      args.splice(1, 0, "127.0.0.1");
    }
  }
  return listen.apply(this, args);
};
