// room.html loads this small module on its own, as soon as it arrives: opening the camera
// takes a moment, and that moment then overlaps the loading of the rest of the page.
// room.js gets the same answer from getLocalMedia() later.
import { getLocalMedia } from './media.js';

getLocalMedia();
